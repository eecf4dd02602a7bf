"""GPU suite (``pytest -m gpu``): skipped with the reason on machines without CUDA.

Written against torch.cuda; not yet run on a GPU (none was lent to the session that wrote it).
"""

import numpy as np
import pytest
import torch

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.artifacts.export_manifest import load_manifest
from parnet_deploy.backends.cuda_streams import CudaStreamsExecutor
from parnet_deploy.backends.torch import TorchBackend
from parnet_deploy.export import ExportConfig, export_model

from conftest import randomize_bn, rel_err

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    return export_model(model, ExportConfig(output=tmp_path_factory.mktemp("gpu"), name="m", split="shared",
                                            verify=False), log=lambda _: None)[0]


@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_torch_backend_on_gpu_equals_onnxruntime_on_cpu(export_dir, mode):
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with runtime.load(export_dir, backend="onnxruntime") as ort, \
            runtime.load(export_dir, backend="torch", device="cuda:0", mode=mode) as gpu:
        assert rel_err(gpu(x), ort(x)) <= 1e-4  # cuDNN picks its own algorithms


def _executor(export_dir, cuda_graph):
    manifest = load_manifest(export_dir)
    backend = TorchBackend(device="cuda:0")
    return CudaStreamsExecutor(manifest, lambda spec, _: backend.load(export_dir / spec.file, spec),
                               cuda_graph=cuda_graph), manifest


def test_cuda_graph_is_captured_and_replays_equal_the_plain_run(export_dir):
    graph, manifest = _executor(export_dir, cuda_graph=True)
    plain, _ = _executor(export_dir, cuda_graph=False)
    assert graph.graph is not None
    for seed in range(4):  # different inputs: a replay must read the new input each time
        x = {manifest.input.name: np.random.default_rng(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)}
        a, b = graph.infer(x), plain.infer(x)
        assert rel_err(a["logits"], b["logits"]) <= 1e-5


def test_gpu_time_lies_within_the_wall_clock_span_and_stages_are_reported(export_dir):
    import time

    ex, manifest = _executor(export_dir, cuda_graph=False)
    x = {manifest.input.name: np.zeros((1, 3, 32, 32), np.float32)}
    ex.infer(x)
    t0 = time.perf_counter()
    _, stages = ex.infer_timed(x)
    wall_ms = (time.perf_counter() - t0) * 1e3
    assert 0 < ex.gpu_time_ms[-1] <= wall_ms
    assert [s.name for s in stages] == [s.name for s in manifest.subgraphs]
    assert all(0 <= s.start <= s.end <= ex.gpu_time_ms[-1] / 1e3 + 1e-6 for s in stages)
