"""ONNX Runtime's IO binding runner (what the backend uses on CUDA), exercised on the CPU provider:
bound once, pooled per concurrent call, outputs not aliased to the reused buffers."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import randomize_bn, threaded_mismatches

import parnet_deploy as pd
from parnet_deploy.artifacts.export_manifest import load_manifest
from parnet_deploy.backends.onnxruntime.iobinding import IoBindingRunner, pinned_memory_info
from parnet_deploy.backends.onnxruntime.runner import create_session, ort
from parnet_deploy.export import ExportConfig, export_model


@pytest.fixture(scope="module")
def stem(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    d = export_model(model, ExportConfig(output=tmp_path_factory.mktemp("iob"), name="m", split="shared",
                                         verify=False, torch_weights=False), log=lambda _: None)[0]
    manifest = load_manifest(d)
    spec = manifest.subgraphs[0]  # the stem: one input, three outputs
    return create_session(d / spec.file, 1, ["CPUExecutionProvider"]), spec


def _x(spec, seed):
    return np.random.default_rng(seed).standard_normal(spec.inputs[0].shape).astype(np.float32)


def test_bound_once_equals_session_run_and_outputs_are_not_aliased(stem):
    session, spec = stem
    runner = IoBindingRunner(session, spec, "cpu", 0)
    assert runner.host_memory == "pageable" and runner.bindings_made == 1
    names = [t.name for t in spec.outputs]
    results = [runner.infer({spec.inputs[0].name: _x(spec, s)}) for s in range(3)]
    for seed, got in enumerate(results):  # earlier results survive later calls
        expected = dict(zip(names, session.run(names, {spec.inputs[0].name: _x(spec, seed)})))
        assert set(got) == set(names)
        for n in names:
            np.testing.assert_array_equal(got[n], expected[n])
    assert runner.bindings_made == 1  # nothing bound per call


def test_concurrent_calls_take_their_own_binding(stem):
    session, spec = stem
    runner = IoBindingRunner(session, spec, "cpu", 0)
    name, out = spec.inputs[0].name, spec.outputs[0].name
    expected = {s: session.run([out], {name: _x(spec, s)})[0] for s in range(4)}
    errors = threaded_mismatches(lambda seed: runner.infer({name: _x(spec, seed)})[out], expected, calls=25)
    assert not errors and 1 <= runner.bindings_made <= 4


def test_pinned_memory_comes_from_the_cuda_provider_when_there_is_one():
    assert pinned_memory_info(ort()) is None  # this build: CPU provider only
    pinned = object()

    class Device:
        def __init__(self, name):
            self.ep_name = name

        def memory_info(self, kind):
            assert kind == "host"
            return pinned

    fake = SimpleNamespace(OrtDeviceMemoryType=SimpleNamespace(HOST_ACCESSIBLE="host"),
                           get_ep_devices=lambda: [Device("CPUExecutionProvider"), Device("CUDAExecutionProvider")])
    assert pinned_memory_info(fake) is pinned
    assert pinned_memory_info(SimpleNamespace()) is None  # an older ONNX Runtime: no EP device API


def test_a_dynamic_batch_binds_each_batch_once(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    d = export_model(model, ExportConfig(output=tmp_path, name="dyn", split="shared", verify=False, batch=(1, 3),
                                         torch_weights=False), log=lambda _: None)[0]
    spec = load_manifest(d).subgraphs[0]
    session = create_session(d / spec.file, 1, ["CPUExecutionProvider"])
    runner = IoBindingRunner(session, spec, "cpu", 0)
    names, image = [t.name for t in spec.outputs], spec.inputs[0].name
    for batch in (2, 3, 1, 2):
        x = np.random.default_rng(batch).standard_normal(spec.inputs[0].shape_at(batch)).astype(np.float32)
        got = runner.infer({image: x})
        for name, want in zip(names, session.run(names, {image: x})):
            assert got[name].shape[0] == batch
            np.testing.assert_array_equal(got[name], want)
    assert runner.bindings_made == 3  # batch 1 at load, then 2 and 3; the second call at 2 reuses its binding
    with pytest.raises(pd.errors.UserError, match=r"batch 4 is outside the bounds 1\.\.3"):
        runner.infer({image: np.zeros(spec.inputs[0].shape_at(4), np.float32)})
    runner.close()
