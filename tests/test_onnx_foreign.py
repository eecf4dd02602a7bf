"""Real architectures nobody here wrote (pytorchcv, random weights): exported with ``--split auto`` for 2
devices, built, and run split through streams (ONNX Runtime, OpenVINO) and distributed (gloo, 2 ranks),
each equal to the unsplit graph (rtol 1e-5). The C library's named call runs them in ``test_capi.py``."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_bn
from test_partition import ZOO

from parnet_deploy import runtime
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.export.onnx_export import OnnxExportConfig, export_onnx
from parnet_deploy.partition import CostModel

# a cheap launch: every one of them is worth splitting, so the split path is what runs
CHEAP = CostModel(launch_ms=0.002, gflops_per_s=50.0, gbytes_per_s=10.0)


def foreign_export(name: str, root: Path):
    """``name`` from ``ZOO`` as ``root/name.onnx`` (input ``x``, output ``y``), exported split for 2 devices."""
    import warnings

    pytest.importorskip("pytorchcv")
    build, side = ZOO[name]
    torch.manual_seed(0)
    model = randomize_bn(build()).eval()
    src = root / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, side, side),), str(src), opset_version=18, dynamo=False,
                          input_names=["x"], output_names=["y"])
    return export_onnx(src, OnnxExportConfig(output=root / "export", devices=2, cost=CHEAP), log=lambda _: None)


@pytest.fixture(scope="module", params=sorted(ZOO))
def foreign(request, tmp_path_factory):
    target, manifest = foreign_export(request.param, tmp_path_factory.mktemp(request.param))
    ref = np.load(target / "reference.npz")
    return request.param, target, manifest, ref["input0"], ref["output0"]


def assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_split_for_two_devices_and_verified(foreign):
    name, _, m, _, _ = foreign
    assert m.family == "onnx" and m.split == "auto" and m.partition.streams == 2, m.partition.verdict
    assert m.dag.width >= 2 and 2 <= len(m.subgraphs) <= 16
    assert m.verification["performed"] and m.verification["worst_max_rel"] <= 1e-5


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_streams_equal_the_whole_graph(foreign, backend):
    _, target, _, x, y = foreign
    with runtime.load(target, backend=backend, mode="streams") as split:
        assert_close(split(x), y)


def test_built_engines_run_split(foreign, tmp_path):
    _, target, _, x, y = foreign
    engines, _ = build_engines(target, BuildConfig(backend="onnxruntime", output=tmp_path), log=lambda _: None)
    with runtime.load(engines, mode="streams") as split:
        assert_close(split(x), y)


def test_distributed_gloo_two_ranks(foreign):
    _, target, _, x, y = foreign
    with runtime.load(target, mode="distributed", timeout_s=60) as run:
        assert run.executor.plan.world == 2
        assert_close(run(x), y)
