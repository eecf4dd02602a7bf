"""GPU suite (``pytest -m gpu``): skipped with the reason on machines without CUDA.

Written against torch.cuda; not yet run on a GPU (none was lent to the session that wrote it).
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import randomize_bn, rel_err

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.artifacts.export_manifest import load_manifest
from parnet_deploy.backends.cuda_streams import CudaStreamsExecutor
from parnet_deploy.backends.torch.backend import TorchBackend
from parnet_deploy.export import ExportConfig, export_model

pytestmark = pytest.mark.gpu


def _export(root, precision="fp32"):
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    return export_model(model, ExportConfig(output=root, name=precision, split="shared", precision=precision,
                                            verify=False), log=lambda _: None)[0]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("gpu"))


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


@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_runtime_cuda_graph_equals_the_plain_run(export_dir, mode):
    with runtime.load(export_dir, backend="torch", device="cuda:0", mode=mode, cuda_graph=True) as graph, \
            runtime.load(export_dir, backend="torch", device="cuda:0", mode=mode) as plain:
        assert graph.executor.graph is not None
        for seed in range(3):
            x = np.random.default_rng(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)
            assert rel_err(graph(x), plain(x)) <= 1e-5


def test_torch_fp16_on_gpu_is_close(export_dir):
    reference = np.load(export_dir / "reference.npz")
    with runtime.load(export_dir, backend="torch", device="cuda:0", precision="fp16") as run:
        assert rel_err(run(reference["image"]), reference["logits"]) <= 2e-2


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_streams_benchmark_reports_stages_without_a_spurious_warning(export_dir, cuda_graph):
    from parnet_deploy.bench.engine import bench_engine
    from parnet_deploy.bench.timing import TimingConfig

    r = bench_engine(export_dir, mode="streams", backend="torch", device="cuda:0", cuda_graph=cuda_graph,
                     timing=TimingConfig(warmup_s=0.2, min_iterations=20, min_duration_s=0.2), log=lambda _: None)
    expected = ["cuda-graph"] if cuda_graph else [s.name for s in load_manifest(export_dir).subgraphs]
    assert [s.name for s in r.stages] == expected and r.critical_path and r.critical_path_ms > 0
    assert r.gpu_compute is not None and 0 < r.gpu_compute.median <= r.latency.median
    assert not [w for w in r.warnings if "(100%)" in w], r.warnings  # the empty-stage-table warning is gone


def test_onnxruntime_cuda_io_binding(export_dir):
    import onnxruntime

    from parnet_deploy.backends.onnxruntime.iobinding import IoBindingRunner

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip(f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu "
                    f"instead of onnxruntime)")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with runtime.load(export_dir) as cpu, runtime.load(export_dir, device="cuda:0", mode="streams") as gpu:
        assert all(isinstance(r, IoBindingRunner) for r in gpu.executor.runners.values())
        for _ in range(3):
            assert rel_err(gpu(x), cpu(x)) <= 1e-4


# -- NCCL: two ranks on two GPUs ---------------------------------------------------------------
TWO_RANKS = {"stem": "a", "stream0": "a", "stream1": "b", "stream2": "b", "fusion": "a"}


def _nccl_runner(export_dir, timeout_s):
    from parnet_deploy.runtime.runner import ParnetRunner

    return ParnetRunner(load_manifest(export_dir), export_dir, backend="torch", mode="distributed",
                        placement=TWO_RANKS, devices={"a": "cuda:0", "b": "cuda:1"}, timeout_s=timeout_s)


@pytest.mark.gpus(2)
def test_nccl_calls_idle_gap_and_clean_close(export_dir):
    import time

    x = [np.random.default_rng(s).standard_normal((1, 3, 32, 32)).astype(np.float32) for s in range(3)]
    with runtime.load(export_dir) as cpu:
        expected = [cpu(xi) for xi in x]
    run = _nccl_runner(export_dir, timeout_s=2)
    assert run.executor.plan.nccl and run.executor.plan.world == 2
    for xi, e in zip(x, expected):
        assert rel_err(run(xi), e) <= 1e-4
    time.sleep(5)  # longer than timeout_s: NCCL's watchdog must not see it
    for xi, e in zip(x, expected):
        assert rel_err(run(xi), e) <= 1e-4
    run.close()
    assert [p.returncode for p in run.executor.procs] == [0]


@pytest.mark.gpus(2)
def test_nccl_killed_rank_raises(export_dir):
    import os
    import signal
    import time

    from parnet_deploy.errors import ParnetError

    run = _nccl_runner(export_dir, timeout_s=5)
    x = np.zeros((1, 3, 32, 32), np.float32)
    run(x)
    os.kill(run.executor.procs[0].pid, signal.SIGKILL)
    run.executor.procs[0].wait(timeout=10)
    t0 = time.monotonic()
    with pytest.raises(ParnetError, match="rank 1 exited"):
        run(x)
    assert time.monotonic() - t0 < 5
    run.close()


# -- TensorRT ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_dir(export_dir, tmp_path_factory):
    from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export

    root = tmp_path_factory.mktemp("int8")
    calib = root / "calib.npz"
    np.savez(calib, images=np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32))
    return quantize_export(export_dir, QuantizeConfig(calib=str(calib), max_drop=100, output=root),
                           log=lambda _: None)[0]


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_builds_parse_and_run(export_dir, int8_dir, tmp_path, precision):
    import onnx

    from parnet_deploy.engines.build import BuildConfig, build_engines

    source = export_dir
    if precision == "fp16":
        source = _export(tmp_path, "fp16")
    if precision == "int8":
        source = int8_dir
        q = onnx.load(source / "model.onnx")
        inits = {i.name: i.data_type for i in q.graph.initializer}
        assert not [n for n in q.graph.node if n.op_type == "DequantizeLinear"
                    and inits.get(n.input[0]) == onnx.TensorProto.INT32]
    engines, _ = build_engines(source, BuildConfig(backend="tensorrt", devices="0", output=tmp_path / "engines",
                                                   measure_iterations=3), log=lambda _: None)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with runtime.load(source) as ort:
        expected = ort(x)
    tolerance = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.1}[precision]
    for mode in ("whole", "streams"):
        with runtime.load(engines, mode=mode) as trt:
            assert rel_err(trt(x), expected) <= tolerance


@pytest.mark.tensorrt
def test_tensorrt_timing_cache_create_reuse_and_corrupt(export_dir, tmp_path):
    from parnet_deploy.backends.tensorrt import builder
    from parnet_deploy.backends.tensorrt.backend import cuda_devices
    from parnet_deploy.engines.build import BuildConfig, build_engines
    from parnet_deploy.errors import ParnetError

    cache_dir = tmp_path / "caches"
    config = BuildConfig(backend="tensorrt", devices="0", output=tmp_path / "e1", timing_cache=cache_dir,
                         measure_iterations=3)
    build_engines(export_dir, config, log=lambda _: None)
    path = builder.timing_cache_path(str(cache_dir), cuda_devices()[0], builder.version())
    assert path.is_file() and path.stat().st_size > 0
    first = path.read_bytes()
    build_engines(export_dir, replace(config, output=tmp_path / "e2"), log=lambda _: None)
    assert path.read_bytes()[:64] == first[:64]  # reused and rewritten, same header
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ParnetError, match="refused the timing cache"):  # never dropped silently
        build_engines(export_dir, replace(config, output=tmp_path / "e3"), log=lambda _: None)
    assert not (tmp_path / "e3").exists()  # nothing half-written


# -- batch N: a dynamic-batch export (1..4) on the torch and TensorRT backends -------------------------------
@pytest.fixture(scope="module")
def dynamic_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    return export_model(model, ExportConfig(output=tmp_path_factory.mktemp("dyn"), name="dyn", split="shared",
                                            batch=(1, 4), verify=False), log=lambda _: None)[0]


def _check_batches(run, ort, tolerance):
    """Rows of batch 3 equal the batch-1 results and ONNX Runtime on the CPU; batch 4 (the max) runs;
    batch 5 is refused in one line naming the bounds."""
    from parnet_deploy.errors import UserError

    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    got = run(x[:3])
    assert got.shape == (3, 10) and rel_err(got, ort(x[:3])) <= tolerance
    for i in range(3):
        assert rel_err(got[i:i + 1], run(x[i:i + 1])) <= tolerance
    assert rel_err(run(x), ort(x)) <= tolerance
    with pytest.raises(UserError, match=r"batch 5 is outside the bounds 1\.\.4") as e:
        run(np.zeros((5, 3, 32, 32), np.float32))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_torch_backend_on_gpu_runs_any_batch_within_the_bounds(dynamic_dir, mode):
    from parnet_deploy.errors import UserError

    with runtime.load(dynamic_dir) as ort, \
            runtime.load(dynamic_dir, backend="torch", device="cuda:0", mode=mode) as gpu:
        if mode == "streams":
            assert all(b.shape[0] == 4 for r in gpu.executor.runners.values() for b in r.buffers.values())
        _check_batches(gpu, ort, 1e-4)
    with pytest.raises(UserError, match="cuda_graph needs static shapes"):
        runtime.load(dynamic_dir, backend="torch", device="cuda:0", mode=mode, cuda_graph=True)


@pytest.mark.tensorrt
def test_tensorrt_batch_profile_builds_and_runs_any_batch(dynamic_dir, tmp_path):
    from parnet_deploy.artifacts.engines_manifest import load_engines
    from parnet_deploy.backends.tensorrt import builder
    from parnet_deploy.backends.tensorrt.backend import cuda_devices
    from parnet_deploy.engines.build import BuildConfig, build_engines

    cache_dir = tmp_path / "caches"
    engines, _ = build_engines(dynamic_dir, BuildConfig(backend="tensorrt", devices="0", output=tmp_path / "engines",
                                                        timing_cache=cache_dir, batch_opt=2, measure_iterations=3),
                               log=lambda _: None)
    assert load_engines(engines).options.profile == (1, 2, 4)
    assert builder.timing_cache_path(str(cache_dir), cuda_devices()[0], builder.version(), (1, 2, 4)).is_file()
    with runtime.load(dynamic_dir) as ort:
        for mode in ("whole", "streams"):
            with runtime.load(engines, mode=mode) as trt:
                _check_batches(trt, ort, 1e-3)
