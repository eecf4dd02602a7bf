"""OpenVINO backend on a tiny hand-made ONNX graph: accuracy vs ONNX Runtime, blobs, threads, precision."""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("openvino")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from parnet_deploy import hardware  # noqa: E402
from parnet_deploy.artifacts.engines_manifest import BuildOptions  # noqa: E402
from parnet_deploy.artifacts.export_manifest import SubgraphSpec, TensorSpec  # noqa: E402
from parnet_deploy.backends.base import cpu_device  # noqa: E402
from parnet_deploy.backends.openvino.backend import OpenVinoBackend  # noqa: E402
from parnet_deploy.errors import BackendMissingError, RunnerClosedError, UserError  # noqa: E402

SHAPE = (1, 3, 16, 16)
SPEC = SubgraphSpec("model", "model.onnx", (TensorSpec("image", SHAPE, "float32"),),
                    (TensorSpec("logits", (1, 10), "float32"),))


def tiny_onnx(path, fp16: bool = False):
    """Conv + Relu + GlobalAveragePool + Flatten + Gemm; ``fp16``: fp16 weights between two Casts."""
    rng = np.random.default_rng(0)
    weights = {"W": rng.standard_normal((8, 3, 3, 3)) * 0.3, "B": rng.standard_normal(8) * 0.1,
               "G": rng.standard_normal((10, 8)), "C": rng.standard_normal(10)}
    dtype = np.float16 if fp16 else np.float32
    inits = [numpy_helper.from_array(w.astype(dtype), name) for name, w in weights.items()]
    x, y = ("x", "y") if fp16 else ("image", "logits")
    nodes = [helper.make_node("Conv", [x, "W", "B"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "G", "C"], [y], transB=1)]
    if fp16:
        nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT16), *nodes,
                 helper.make_node("Cast", ["y"], ["logits"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(SHAPE))],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("ov") / "model.onnx")


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def reference(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def rel_err(a, b) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def test_class_contract():
    assert OpenVinoBackend.available()
    assert OpenVinoBackend.version()
    assert [d.tag for d in OpenVinoBackend.devices()] == ["cpu"]
    assert (OpenVinoBackend.name, OpenVinoBackend.engine_suffix) == ("openvino", ".blob")


def test_missing_openvino_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    assert not OpenVinoBackend.available()
    with pytest.raises(BackendMissingError, match="pip install openvino"):
        OpenVinoBackend.version()


def test_onnx_matches_onnxruntime(model_path):
    backend = OpenVinoBackend(threads=1)
    runner = backend.load(model_path, SPEC)
    x = image(0)
    out = runner.infer({"image": x})
    assert list(out) == ["logits"] and out["logits"].dtype == np.float32 and out["logits"].shape == (1, 10)
    assert rel_err(out["logits"], reference(model_path, x)) < 1e-4
    assert runner.properties["INFERENCE_PRECISION_HINT"] == "f32"
    assert runner.properties["ENABLE_CPU_PINNING"] == "NO"
    assert backend.describe()["inference_precision"] == "f32"


def test_blob_matches_onnx(model_path, tmp_path):
    blob = tmp_path / "model.blob"
    OpenVinoBackend.build(model_path, blob, cpu_device(), BuildOptions(precision="fp32"))
    assert blob.stat().st_size > 0
    x = image(1)
    from_onnx = OpenVinoBackend(threads=1).load(model_path, SPEC).infer_array(x)
    from_blob = OpenVinoBackend(threads=1).load(blob, SPEC)
    np.testing.assert_allclose(from_blob.infer_array(x), from_onnx, rtol=0, atol=1e-6 * np.abs(from_onnx).max())
    # a blob does not keep its compile options: the import's own must be in force
    assert from_blob.properties["INFERENCE_PRECISION_HINT"] == "f32"
    assert from_blob.properties["INFERENCE_NUM_THREADS"] == "1"


def test_fp16_export_builds_and_runs(tmp_path):
    source = tiny_onnx(tmp_path / "fp16.onnx", fp16=True)
    OpenVinoBackend.build(source, tmp_path / "fp16.blob", cpu_device(), BuildOptions(precision="fp16"))
    x = image(2)
    out = OpenVinoBackend(threads=1, precision="fp16").load(tmp_path / "fp16.blob", SPEC).infer_array(x)
    assert out.dtype == np.float32
    assert rel_err(out, reference(source, x)) < 1e-4


def test_concurrent_calls_on_one_runner(model_path):
    runner = OpenVinoBackend(threads=2).load(model_path, SPEC)
    inputs = [image(10 + k) for k in range(4)]
    expected = [runner.infer_array(x) for x in inputs]

    def work(k: int) -> int:
        return sum(np.array_equal(runner.infer_array(inputs[k]), expected[k]) for _ in range(50))

    with ThreadPoolExecutor(4) as pool:  # result() re-raises a worker's exception
        assert [f.result() for f in [pool.submit(work, k) for k in range(4)]] == [50] * 4


@pytest.mark.parametrize("threads,concurrency,expected", [(2, 1, "2"), (2, 2, "1"), (1, 1, "1")])
def test_threads_honoured(model_path, tmp_path, threads, concurrency, expected):
    if threads > (os.cpu_count() or 1):
        pytest.skip("OpenVINO caps INFERENCE_NUM_THREADS at the core count")
    runner = OpenVinoBackend(threads=threads).load(model_path, SPEC, concurrency=concurrency)
    assert runner.properties["INFERENCE_NUM_THREADS"] == expected
    assert runner.properties["NUM_STREAMS"] == "1"
    blob = tmp_path / "model.blob"
    OpenVinoBackend.build(model_path, blob, cpu_device(), BuildOptions())
    imported = OpenVinoBackend(threads=threads).load(blob, SPEC, concurrency=concurrency)
    assert imported.properties["INFERENCE_NUM_THREADS"] == expected


def test_closed_runner_refuses(model_path):
    runner = OpenVinoBackend(threads=1).load(model_path, SPEC)
    runner.close()
    with pytest.raises(RunnerClosedError, match="closed"):
        runner.infer({"image": image(0)})


def test_bad_inputs(model_path):
    runner = OpenVinoBackend(threads=1).load(model_path, SPEC)
    with pytest.raises(UserError, match="expected inputs"):
        runner.infer({"input": image(0)})
    with pytest.raises(UserError, match="shape"):
        runner.infer({"image": image(0)[:, :, :8]})


def test_spec_names_must_match_the_model(model_path):
    wrong = SubgraphSpec("model", "model.onnx", SPEC.inputs, (TensorSpec("probs", (1, 10), "float32"),))
    with pytest.raises(UserError, match="probs"):
        OpenVinoBackend(threads=1).load(model_path, wrong)


def test_unknown_device():
    with pytest.raises(UserError, match="unknown device"):
        OpenVinoBackend(device="cuda:0")


def test_bf16_refused_without_native_bf16(monkeypatch, model_path, tmp_path):
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    with pytest.raises(UserError, match="bf16"):
        OpenVinoBackend(precision="bf16")
    with pytest.raises(UserError, match="bf16"):
        OpenVinoBackend.build(model_path, tmp_path / "m.blob", cpu_device(), BuildOptions(precision="bf16"))


@pytest.mark.skipif(not hardware.native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX-BF16)")
def test_bf16_close_to_fp32(model_path, tmp_path):
    x = image(3)
    fp32 = OpenVinoBackend(threads=1).load(model_path, SPEC).infer_array(x)
    blob = tmp_path / "bf16.blob"
    OpenVinoBackend.build(model_path, blob, cpu_device(), BuildOptions(precision="bf16"))
    for path in (model_path, blob):
        runner = OpenVinoBackend(threads=1, precision="bf16").load(path, SPEC)
        assert runner.properties["INFERENCE_PRECISION_HINT"] == "bf16"
        out = runner.infer_array(x)
        assert rel_err(out, fp32) < 5e-2 and not np.array_equal(out, fp32)  # close, but really bf16
