"""Every runner owns one contract (backends/base.py): the engine's own tensors must be the manifest's at
load, each call is checked for names, dtypes and shapes, outputs come in the spec's dtypes, and a
runner is a context manager that closes itself."""

import re
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_openvino_backend import SPEC, image, tiny_onnx

from parnet_deploy.artifacts.export_manifest import SubgraphSpec, TensorSpec
from parnet_deploy.backends import get_backend
from parnet_deploy.backends.base import Runner
from parnet_deploy.errors import ExportError, RunnerClosedError, UserError

BACKENDS = ["onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny float32 model, and the same model with a float16 output."""
    d = tmp_path_factory.mktemp("contract")
    f32 = tiny_onnx(d / "model.onnx")
    m = onnx.load(str(f32))
    m.graph.output[0].name = "logits32"
    for node in m.graph.node:
        node.output[:] = ["logits32" if o == "logits" else o for o in node.output]
    m.graph.node.append(helper.make_node("Cast", ["logits32"], ["logits"], to=TensorProto.FLOAT16))
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("logits", TensorProto.FLOAT16, [1, 10]))
    onnx.save(m, str(d / "half_out.onnx"))
    return f32, d / "half_out.onnx"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("outputs, message", [
    ((TensorSpec("logits", (1, 11), "float32"),), "the model's outputs are ['logits float32[1, 10]'], the manifest "
                                                   "says ['logits float32[1, 11]']"),
    ((TensorSpec("logits", (1, 10), "float16"),), "the manifest says ['logits float16[1, 10]']"),
    ((TensorSpec("probs", (1, 10), "float32"),), "the model's outputs are ['logits float32[1, 10]']"),
])
def test_a_spec_the_engine_does_not_report_is_refused_at_load(models, backend, outputs, message):
    spec = SubgraphSpec("model", "model.onnx", SPEC.inputs, outputs)
    with pytest.raises(ExportError) as e:
        get_backend(backend, threads=1).load(models[0], spec)
    assert str(e.value).startswith("model: ") and message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_call_is_checked_against_the_spec(models, backend):
    with get_backend(backend, threads=1).load(models[0], SPEC) as runner:
        with pytest.raises(UserError, match=r"^model: input 'image' has dtype float64 and shape \[1, 3, 16, 16\], "
                                            r"expected float32 and \[1, 3, 16, 16\]$"):
            runner.infer({"image": image(0).astype(np.float64)})
        with pytest.raises(UserError, match=r"has dtype float32 and shape \[3, 16, 16\], expected"):
            runner.infer({"image": image(0)[0]})
        with pytest.raises(UserError, match=r"input 'image' has dtype list"):
            runner.infer({"image": image(0).tolist()})
        with pytest.raises(UserError, match=r"expected inputs \['image'\], got \['extra', 'image'\]"):
            runner.infer({"image": image(0), "extra": image(1)})
        out = runner.infer({"image": image(0)})
    assert out["logits"].dtype == np.float32 and out["logits"].shape == (1, 10)
    assert runner.closed
    with pytest.raises(RunnerClosedError, match="runner is closed"):
        runner.infer({"image": image(0)})


@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_come_in_the_specs_dtype(models, backend):
    spec = SubgraphSpec("model", "half_out.onnx", SPEC.inputs, (TensorSpec("logits", (1, 10), "float16"),))
    with get_backend(backend, threads=1).load(models[1], spec) as half, \
            get_backend(backend, threads=1).load(models[0], SPEC) as full:
        y16, y32 = half.infer_array(image(2)), full.infer_array(image(2))
    assert y16.dtype == np.float16  # OpenVINO used to cast every output to float32
    np.testing.assert_allclose(y16.astype(np.float32), y32, rtol=2e-3, atol=2e-3)


class _Reports(Runner):
    def __init__(self, spec, inputs, outputs):
        super().__init__(spec, inputs, outputs)

    def infer_impl(self, feeds):
        return {"logits": np.zeros((1, 10), np.float32)}


def test_the_base_compares_every_field_and_the_order():
    a, b = TensorSpec("a", (1, 2), "float32"), TensorSpec("b", (1, 2), "float32")
    spec = SubgraphSpec("s", "s.onnx", (a, b), (TensorSpec("logits", (1, 10), "float32"),))
    assert _Reports(spec, (a, b), spec.outputs).spec is spec
    for inputs in [(b, a), (a,), (a, TensorSpec("b", (1, 2), "float16")), (a, TensorSpec("b", (2, 1), "float32"))]:
        with pytest.raises(ExportError, match="^s: the model's inputs are "):
            _Reports(spec, inputs, spec.outputs)
    with _Reports(spec, (a, b), spec.outputs) as r:
        r.close()  # closing twice is harmless
    assert r.closed


@pytest.mark.parametrize("name, module", [("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                                          ("torch", "torch")])
def test_a_missing_library_makes_its_backend_unavailable_with_its_install_hint(monkeypatch, name, module):
    from parnet_deploy.backends import backend_class, registry
    from parnet_deploy.errors import BackendMissingError

    cls = backend_class(name)
    assert cls.available()
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now raises ImportError
    assert not cls.available()  # onnxruntime's used to let the BackendMissingError escape
    hint = registry()[name].install_hint
    with pytest.raises(BackendMissingError, match=re.escape(f"{name} is not available: {hint}")):
        cls.version()
