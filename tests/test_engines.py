import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.backends import get_backend
from parnet_deploy.engines import placement as pl
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.artifacts.engines_manifest import (BackendRecord, DeviceRecord, EngineIncompatibleError,
                                                     check_compatible, load_engines)
from parnet_deploy.engines import build as B
from parnet_deploy.errors import ExportError, ParnetError
from parnet_deploy.export import ExportConfig, export_model, load_manifest

from conftest import TINY, randomize_bn, rel_err

RES = (64, 64)


def _model():
    torch.manual_seed(0)
    return randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY), seed=11)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("eng")
    model = _model()
    return root, {split: export_model(model, ExportConfig(output=root / "export", name=split, resolution=RES,
                                                          split=split, verify=False), log=lambda _: None)[0]
                  for split in ("replicated", "shared")}


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def engines(exports, request):
    root, dirs = exports
    d, manifest = build_engines(dirs["shared"], BuildConfig(backend=request.param, output=root / request.param,
                                                            measure_iterations=3), log=lambda _: None)
    return d, manifest


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((1, 3, *RES)).astype(np.float32)


def _build_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "parnet_deploy.cli.build", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


SUFFIX = {"onnxruntime": ".ort.onnx", "openvino": ".blob"}


def test_build_round_trip(exports, engines):
    _, dirs = exports
    d, manifest = engines
    backend = manifest.backend.name
    assert manifest.backend.version and manifest.precision == "fp32" and manifest.options.precision == "fp32"
    assert manifest.devices["cpu"].kind == "cpu" and manifest.devices["cpu"].name
    assert manifest.placement == {n: "cpu" for n in ("model", "stem", "stream0", "stream1", "stream2", "fusion")}
    export = load_manifest(dirs["shared"])
    assert manifest.sources == {f: s.sha256 for f, s in export.files.items()}
    assert set(manifest.files) == {f"cpu/{n}{SUFFIX[backend]}" for n in manifest.placement}
    assert load_engines(d) == manifest
    reference = runtime.load(dirs["shared"])(_x())
    for mode in ("whole", "streams"):
        with runtime.load(d, mode=mode) as run:
            assert rel_err(run(_x()), reference) <= 1e-5


def test_engine_dir_bench(engines, tmp_path):
    d, _ = engines
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.bench", "--engine", str(d), "--mode", "streams",
                        "--warmup", "0.1", "--iterations", "5", "--duration", "0.1", "--json", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["latency_ms"]["median"] > 0


def _copy(d, tmp_path):
    c = tmp_path / "copy"
    shutil.copytree(d, c)
    return c


def _edit(d, fn):
    raw = json.loads((d / "engines.json").read_text())
    fn(raw)
    (d / "engines.json").write_text(json.dumps(raw))


def test_other_backend_version_is_refused_with_rebuild_message(engines, tmp_path):
    d = _copy(engines[0], tmp_path)
    _edit(d, lambda raw: raw["backend"].update(version="0.0.1"))
    backend = engines[1].backend.name
    with pytest.raises(EngineIncompatibleError, match=rf"built with {backend} 0\.0\.1.*rebuild with: parnet-build"):
        runtime.load(d)


def test_other_cpu_is_refused(engines, tmp_path):
    d = _copy(engines[0], tmp_path)
    _edit(d, lambda raw: raw["devices"]["cpu"].update(name="Some Other CPU"))
    with pytest.raises(EngineIncompatibleError, match="optimized for Some Other CPU; this CPU is"):
        runtime.load(d)


def test_other_compute_capability_is_refused(engines):
    _, manifest = engines
    gpu = DeviceRecord("cuda0-nvidia-a100-sm80", "cuda", "NVIDIA A100", 0, "8.0", "GPU-1")
    m = replace(manifest, backend=BackendRecord("tensorrt", "10.3.0"),
                devices={gpu.tag: gpu}, placement={k: gpu.tag for k in manifest.placement})
    here = DeviceRecord("cuda0-nvidia-h100-sm90", "cuda", "NVIDIA H100", 0, "9.0", "GPU-2")
    with pytest.raises(EngineIncompatibleError, match=r"compute capability 8\.0 \(NVIDIA A100\); this GPU is 9\.0"):
        check_compatible(m, "10.3.0", {gpu.tag: here})
    with pytest.raises(EngineIncompatibleError, match=r"built with tensorrt 10\.3\.0, this is tensorrt 10\.5\.0"):
        check_compatible(m, "10.5.0", {gpu.tag: gpu})
    with pytest.raises(EngineIncompatibleError, match="no such device here"):
        check_compatible(m, "10.3.0", {gpu.tag: None})
    check_compatible(m, "10.3.0", {gpu.tag: replace(gpu, uuid="GPU-3")})  # same kind of GPU: fine


def test_tampered_engine_is_refused(engines, tmp_path):
    d = _copy(engines[0], tmp_path)
    engine = f"cpu/stream1{SUFFIX[engines[1].backend.name]}"
    with open(d / engine, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportError, match=f"{engine} has .* bytes"):
        load_engines(d)
    data = bytearray((d / engine).read_bytes()[:-1])
    data[len(data) // 2] ^= 0xFF
    (d / engine).write_bytes(bytes(data))
    with pytest.raises(ExportError, match=f"{engine} does not match its sha256"):
        load_engines(d)


def test_auto_keeps_the_measured_fastest(exports, tmp_path, monkeypatch):
    _, dirs = exports
    fake = {"onnxruntime": 7.0, "openvino": 3.0}
    monkeypatch.setattr(B, "median_ms_interleaved",
                        lambda runners, iterations: [fake[r.__module__.split(".")[2]] for r in runners])
    lines = []
    d, m = build_engines(dirs["shared"], BuildConfig(output=tmp_path, measure_iterations=1), log=lines.append)
    assert m.backend.name == "openvino" and (d / "cpu" / "model.blob").is_file()
    assert [(t.backend, t.median_ms, t.chosen) for t in m.selection] == [("onnxruntime", 7.0, False),
                                                                        ("openvino", 3.0, True)]
    assert any("onnxruntime 7.00 ms, openvino 3.00 ms -> openvino" in line for line in lines)
    fake.update(onnxruntime=1.0)
    _, m = build_engines(dirs["shared"], BuildConfig(output=tmp_path, measure_iterations=1, force=True),
                         log=lambda _: None)
    assert m.backend.name == "onnxruntime" and [t.chosen for t in m.selection] == [True, False]


def test_build_cli_errors(exports, tmp_path):
    root, dirs = exports
    r = _build_cli(tmp_path / "missing", cwd=tmp_path)
    assert r.returncode == 2 and "export directory not found" in r.stderr
    r = _build_cli(dirs["shared"], "--devices", "0,x", cwd=tmp_path)
    assert r.returncode == 2 and "--devices" in r.stderr
    r = _build_cli(dirs["shared"], "--placement", "nope.json", cwd=tmp_path)
    assert r.returncode == 2 and "--placement" in r.stderr
    r = _build_cli(dirs["shared"], "--backend", "tensorrt", "--devices", "0", cwd=tmp_path)
    assert r.returncode == 2 and "pip install" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "engines").exists() or os.listdir(tmp_path / "engines") == []


def test_tensorrt_on_an_export_explains(exports):
    _, dirs = exports
    with pytest.raises(ParnetError, match="tensorrt runs engines: parnet-build"):
        runtime.load(dirs["shared"], backend="tensorrt")


# -- distributed (gloo, 3 processes on this CPU) ----------------------------------------------
@pytest.mark.parametrize("split", ["replicated", "shared"])
def test_distributed_gloo_equals_whole(exports, split):
    _, dirs = exports
    whole = runtime.load(dirs[split])
    with runtime.load(dirs[split], mode="distributed", timeout_s=20) as run:
        assert run.executor.plan.world == 3
        for seed in range(3):
            assert rel_err(run(_x(seed)), whole(_x(seed))) <= 1e-6


def test_killed_rank_raises_instead_of_hanging(exports):
    _, dirs = exports
    run = runtime.load(dirs["replicated"], mode="distributed", timeout_s=5)
    run(_x())
    os.kill(run.executor.procs[1].pid, signal.SIGKILL)
    run.executor.procs[1].wait(timeout=5)
    t0 = time.monotonic()
    with pytest.raises(ParnetError, match="rank 2 exited"):
        run(_x())
    assert time.monotonic() - t0 < 5
    run.close()


def test_unresponsive_rank_times_out(exports):
    _, dirs = exports
    run = runtime.load(dirs["shared"], mode="distributed", timeout_s=2)
    run(_x())
    pid = run.executor.procs[0].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(ParnetError, match="distributed call failed"):
            run(_x())
        assert time.monotonic() - t0 < 10
        with pytest.raises(ParnetError, match="broken"):
            run(_x())
    finally:
        os.kill(pid, signal.SIGCONT)
        run.close()
    assert all(p.poll() is not None for p in run.executor.procs)


def test_idle_gap_longer_than_the_timeout_and_a_clean_close(exports):
    """Control goes through the store, not a collective: an idle gap is not a timeout (it was: gloo's
    recv timed out in every worker after timeout_s). Control keys do not pile up; close ends every rank."""
    _, dirs = exports
    whole = runtime.load(dirs["replicated"])
    run = runtime.load(dirs["replicated"], mode="distributed", timeout_s=1)
    assert rel_err(run(_x(0)), whole(_x(0))) <= 1e-6
    keys = run.executor.store.num_keys()
    time.sleep(2.5)
    for seed in range(1, 4):
        assert rel_err(run(_x(seed)), whole(_x(seed))) <= 1e-6
    assert run.executor.store.num_keys() == keys
    run.close()
    assert [p.returncode for p in run.executor.procs] == [0, 0]


def test_distributed_hands_tensors_to_device_runners(exports):
    """Torch runners take and return tensors (the DeviceRunner path NCCL uses on GPUs), here over gloo."""
    from parnet_deploy.backends.base import DeviceRunner

    _, dirs = exports
    whole = runtime.load(dirs["shared"])
    with runtime.load(dirs["shared"], backend="torch", mode="distributed", timeout_s=20) as run:
        assert all(isinstance(r, DeviceRunner) for r in run.executor.program.runners.values())
        for seed in range(2):
            assert rel_err(run(_x(seed)), whole(_x(seed))) <= 1e-5


def test_schedule_orders_every_transfer_the_same_way_on_both_sides(exports):
    """Per DAG level, the tensors that cross ranks (one global order, so NCCL's blocking point-to-point
    ops match pairwise), then the level's subgraphs; logits made elsewhere go to rank 0 last."""
    from parnet_deploy.runtime.distributed import RankPlan, Transfer, schedule

    _, dirs = exports
    m = load_manifest(dirs["shared"])
    two = RankPlan.make(m, {"stem": "a", "stream0": "a", "stream1": "b", "stream2": "b", "fusion": "a"},
                        {"a": "cpu", "b": "cpu"}, "fp32")
    x, y = [t.name for t in m.subgraphs[0].outputs], [m.subgraphs[k + 1].outputs[0].name for k in range(3)]
    assert schedule(two) == (
        ((), ("stem",)),
        ((Transfer(x[1], 0, 1), Transfer(x[2], 0, 1)), ("stream0", "stream1", "stream2")),
        ((Transfer(y[1], 1, 0), Transfer(y[2], 1, 0)), ("fusion",)))
    away = RankPlan.make(load_manifest(dirs["replicated"]), {"stream0": "a", "stream1": "b", "stream2": "c",
                                                             "fusion": "b"}, {t: "cpu" for t in "abc"}, "fp32")
    steps = schedule(away)  # the fusion's rank is rank 0; the image is broadcast, nothing else moves first
    assert [level for _, level in steps] == [("stream0", "stream1", "stream2"), ("fusion",)]
    assert steps[0][0] == () and {(t.src, t.dst) for t in steps[1][0]} == {(1, 0), (2, 0)}


def test_distributed_fp16_export_keeps_the_manifest_dtypes(exports, tmp_path):
    """A runner may compute in float32 (torch) or float16 (onnxruntime); what crosses ranks is the
    manifest's float16 on both sides (float32 into a float16 buffer aborted gloo)."""
    _, dirs = exports
    d = export_model(_model(), ExportConfig(output=tmp_path, name="fp16", resolution=RES, split="shared",
                                         precision="fp16", verify=False), log=lambda _: None)[0]
    whole = runtime.load(d)
    for backend in ("onnxruntime", "torch"):
        with runtime.load(d, backend=backend, mode="distributed", timeout_s=20) as run:
            assert rel_err(run(_x(1)), whole(_x(1))) <= 1e-2, backend


def test_a_worker_that_cannot_load_fails_start_up_at_once(exports, tmp_path):
    from parnet_deploy.runtime.distributed import DistributedError, DistributedExecutor

    _, dirs = exports
    d = tmp_path / "broken"
    shutil.copytree(dirs["shared"], d)
    manifest = load_manifest(d)
    (d / manifest.subgraph("stream1").file).write_bytes(b"not onnx")  # rank 1's file; rank 0 loads fine
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match="rank 1 exited .* while loading: rank 1: onnxruntime cannot load"):
        DistributedExecutor(manifest, d, "onnxruntime", timeout_s=5)
    assert time.monotonic() - t0 < 60  # not the 120 s start-up deadline


def test_an_interrupted_call_breaks_the_runner_and_close_is_quick(exports):
    """Ctrl-C in the middle of a call leaves the ranks out of step: the runner says so at once, and
    closing a broken runner kills its workers instead of waiting for them."""
    _, dirs = exports
    run = runtime.load(dirs["shared"], mode="distributed", timeout_s=5)
    run(_x())

    def interrupted(feeds):
        raise KeyboardInterrupt

    run.executor.program.runners["fusion"].infer = interrupted
    with pytest.raises(KeyboardInterrupt):
        run(_x())
    with pytest.raises(ParnetError, match="broken: a call was interrupted \\(KeyboardInterrupt\\)"):
        run(_x())
    t0 = time.monotonic()
    run.close()
    assert time.monotonic() - t0 < 5 and all(p.poll() is not None for p in run.executor.procs)
    assert run.executor.store is None and run.executor.program is None  # nothing held after close


@pytest.mark.parametrize("timeout_s", [0, 1e-7, 1e8, float("nan"), float("inf")])
def test_distributed_timeout_bounds(exports, timeout_s):
    _, dirs = exports
    with pytest.raises(ParnetError, match="timeout must be between 0.001 and 1e\\+07 seconds"):
        runtime.load(dirs["shared"], mode="distributed", timeout_s=timeout_s)


def test_rank_plans_refuse_what_nccl_cannot_do(exports):
    from parnet_deploy.runtime.distributed import RankPlan, _RankProgram

    _, dirs = exports
    m = load_manifest(dirs["shared"])
    three = {"stem": "a", "stream0": "a", "stream1": "b", "stream2": "c", "fusion": "a"}
    with pytest.raises(ParnetError, match="not a mix"):
        RankPlan.make(m, three, {"a": "cpu", "b": "cuda:0", "c": "cuda:1"}, "fp32")
    with pytest.raises(ParnetError, match="one rank per GPU"):
        RankPlan.make(m, three, {"a": "cuda:0", "b": "cuda:1", "c": "cuda:1"}, "fp32")
    with pytest.raises(ParnetError, match="one rank per GPU"):  # cuda is cuda:0
        RankPlan.make(m, three, {"a": "cuda", "b": "cuda:0", "c": "cuda:1"}, "fp32")
    with pytest.raises(ParnetError, match="unknown device 'gpu1'"):
        RankPlan.make(m, three, {"a": "cuda:0", "b": "gpu1", "c": "cuda:2"}, "fp32")
    if torch.cuda.device_count() < 3:
        with pytest.raises(ParnetError, match="needs 3 GPUs"):
            RankPlan.make(m, None, None, "fp32", device="cuda")
    plan = RankPlan.make(m, three, {"a": "cuda:0", "b": "cuda:1", "c": "cuda:2"}, "fp32")
    assert plan.nccl and plan.world == 3 and plan.rank_of == {"stem": 0, "stream0": 0, "stream1": 1,
                                                             "stream2": 2, "fusion": 0}
    ort = get_backend("onnxruntime", threads=1)
    host_only = {s.name: ort.load(dirs["shared"] / s.file, s) for s in m.subgraphs[:1]}
    with pytest.raises(ParnetError, match="NCCL carries device tensors"):
        _RankProgram(plan, 0, None, host_only, 1.0)


# -- placement ------------------------------------------------------------------------------
def _toy_manifest(exports):
    _, dirs = exports
    return load_manifest(dirs["shared"])


def test_placement_spreads_streams_when_the_link_is_fast(exports):
    m = _toy_manifest(exports)
    devices = ["a", "b", "c"]
    cost = {(s.name, d): {"stem": 1.0, "fusion": 2.0}.get(s.name, 10.0) for s in m.subgraphs for d in devices}
    best = pl.plan(m, devices, cost, pl.Link(gbytes_per_s=100.0, latency_ms=0.01))
    streams = [best.assignment[f"stream{k}"] for k in range(3)]
    assert len(set(streams)) == 3
    assert best.predicted_ms == pytest.approx(1 + 10 + 2, abs=0.2)
    single = pl.simulate(list(m.subgraphs), {s.name: "a" for s in m.subgraphs}, cost, pl.Link(), "a",
                         ["image"], ["logits"])
    assert single.predicted_ms == pytest.approx(33.0) and best.predicted_ms < single.predicted_ms
    assert best.critical_path[0] == "stem" and best.critical_path[-1] == "fusion"


def test_placement_keeps_everything_home_when_the_link_is_slow(exports):
    m = _toy_manifest(exports)
    devices = ["a", "b", "c"]
    cost = {(s.name, d): 5.0 for s in m.subgraphs for d in devices}
    best = pl.plan(m, devices, cost, pl.Link(gbytes_per_s=1e-6, latency_ms=50.0))
    assert set(best.assignment.values()) == {"a"} and best.predicted_ms == pytest.approx(25.0)


def test_placement_prefers_the_faster_device(exports):
    m = _toy_manifest(exports)
    cost = {(s.name, d): (1.0 if d == "fast" else 4.0) for s in m.subgraphs for d in ("slow", "fast")}
    best = pl.plan(m, ["slow", "fast"], cost, pl.Link(gbytes_per_s=1e3, latency_ms=0.0))
    # all on the fast device: stem 1 + streams 3 x 1 + fusion 1 = 5; any stream on the slow one costs 4 alone
    assert best.assignment == {s.name: "fast" for s in m.subgraphs}
    assert best.predicted_ms == pytest.approx(5.0, abs=1e-3)  # plus moving the image off the home device


# -- on a GPU (skipped here) --------------------------------------------------------------------
@pytest.mark.tensorrt
def test_tensorrt_engines_match_onnxruntime(exports, tmp_path):
    _, dirs = exports
    d, _ = build_engines(dirs["shared"], BuildConfig(backend="tensorrt", output=tmp_path, measure_iterations=3),
                         log=lambda _: None)
    reference = runtime.load(dirs["shared"])(_x())
    for mode in ("whole", "streams"):
        with runtime.load(d, mode=mode) as run:
            assert rel_err(run(_x()), reference) <= 1e-3  # TF32 convolutions


@pytest.mark.tensorrt
@pytest.mark.gpus(3)
def test_tensorrt_multi_gpu_distributed_nccl(exports, tmp_path):
    if torch.cuda.device_count() < 3:
        pytest.skip("needs 3 GPUs")
    _, dirs = exports
    d, _ = build_engines(dirs["replicated"], BuildConfig(backend="tensorrt", devices="0,1,2", placement="official",
                                                         output=tmp_path), log=lambda _: None)
    reference = runtime.load(dirs["replicated"])(_x())
    with runtime.load(d, mode="distributed") as run:
        assert rel_err(run(_x()), reference) <= 1e-3


def test_timing_caches_are_keyed_by_gpu_model_compute_capability_and_tensorrt_version():
    from parnet_deploy.backends.tensorrt.builder import timing_cache_path

    h100 = DeviceRecord(tag="cuda0", kind="cuda", name="NVIDIA H100 80GB HBM3", index=0, compute_capability="9.0")
    a100 = DeviceRecord(tag="cuda1", kind="cuda", name="NVIDIA A100-SXM4-40GB", index=1, compute_capability="8.0")
    path = timing_cache_path("caches", h100, "10.5.0")
    assert path.as_posix() == "caches/nvidia-h100-80gb-hbm3-sm90-trt10-5-0.cache"
    assert timing_cache_path("caches", h100, "10.5.0") == path  # reused by the next build on this GPU
    others = {timing_cache_path("caches", a100, "10.5.0"), timing_cache_path("caches", h100, "11.0.0"),
              timing_cache_path("caches", replace(h100, compute_capability="8.9"), "10.5.0")}
    assert path not in others and len(others) == 3
    assert timing_cache_path("caches", replace(h100, index=3, tag="cuda3"), "10.5.0") == path  # same model, any slot
