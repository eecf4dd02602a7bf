"""The distributed executor (gloo, 3 processes on this CPU): results, failures, timeouts, rank plans."""

import os
import shutil
import signal
import time

import pytest
import torch
from conftest import ENGINE_RES as RES
from conftest import engine_input as _x
from conftest import engine_model as _model
from conftest import rel_err

from parnet_deploy import runtime
from parnet_deploy.backends import get_backend
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.errors import ParnetError, UserError
from parnet_deploy.export import ExportConfig, export_model, load_manifest


@pytest.fixture(scope="module")
def exports(engine_exports):
    return engine_exports


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



@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    """A dynamic-batch export (batch 1..4), small."""
    return export_model(_model(), ExportConfig(output=tmp_path_factory.mktemp("dyn"), name="dyn", resolution=(32, 32),
                                               batch=(1, 4), split="shared", verify=False), log=lambda _: None)[0]


def _images(n, seed=0):
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def test_call_messages_carry_the_batch():
    from parnet_deploy.runtime.distributed.worker import RUN, call_batch, call_message

    assert call_message(None) == RUN and call_batch(RUN) is None
    assert call_message(3) == b"run:3" and call_batch(b"run:3") == 3
    for bad in (b"stop", b"run:x", b"walk:3"):
        with pytest.raises(ValueError):
            call_batch(bad)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_distributed_runs_any_batch_within_the_bounds(dynamic, backend):
    """Rank 0 tells the workers each call's batch; what a rank receives lands in buffers sized for the
    largest batch, used as views; rows of a batch equal batch-1 results; a batch outside the bounds
    is refused in one line before any rank hears of the call, and the runner goes on."""
    whole = runtime.load(dynamic)
    x = _images(3)
    with runtime.load(dynamic, backend=backend, mode="distributed", timeout_s=20) as run:
        ex = run.executor
        got = run(x)
        assert got.shape == (3, 10) and rel_err(got, whole(x)) <= 1e-5
        for i in range(3):
            assert rel_err(got[i:i + 1], run(x[i:i + 1])) <= 1e-5
        assert rel_err(run(_images(4, 1)), whole(_images(4, 1))) <= 1e-5
        assert ex.program.buffers and all(b.shape[0] == 4 for b in ex.program.buffers.values())
        kept = run(x[:2])
        run(_images(2, 5))
        assert rel_err(kept, got[:2]) <= 1e-5  # a result is not overwritten by the next call
        calls, keys = ex.calls, ex.store.num_keys()
        with pytest.raises(UserError, match=r"^distributed: batch 5 is outside the bounds 1\.\.4 \(input 'image'\)$"):
            ex.infer({"image": _images(5)})
        with pytest.raises(UserError, match=r"batch 5 is outside the bounds 1\.\.4"):
            run(_images(5))
        assert ex.calls == calls and ex.store.num_keys() == keys and ex.broken is None
        assert rel_err(run(x[1:2]), got[1:2]) <= 1e-5  # the ranks are still in step


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
