"""Distributed workers and signals: a terminal's Ctrl-C reaches the caller only (rank 0 decides),
and workers do not outlive a caller that dies without closing them.

Each test runs a caller script in its own session, the way a shell runs a foreground job in its
own process group, so a signal sent to that group is what Ctrl-C at a terminal sends.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import TINY, randomize_bn

import parnet_deploy as pd
from parnet_deploy.export import ExportConfig, export_model

RES = (64, 64)

CALLER = textwrap.dedent("""
    import faulthandler, signal, sys, time
    import numpy as np
    from parnet_deploy import runtime

    # As a program started at a terminal: Ctrl-C raises KeyboardInterrupt. A test suite run as a
    # background job (`make test &`) inherits SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.dump_traceback_later(90, exit=True)  # a hang shows where, in stderr, before the test gives up

    run = runtime.load(sys.argv[1], mode="distributed", timeout_s=20)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    first = run(x)
    print("workers", *[p.pid for p in run.executor.procs], flush=True)
    try:
        print("ready", flush=True)  # inside the try: the test's SIGINT follows this line
        while True:  # idle: no call in flight
            time.sleep(0.05)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    second = run(x)  # rank 0 decided to go on: the runner still works
    print("equal" if np.array_equal(first, second) else "differ", flush=True)
    run.close()
    print("codes", *[p.returncode for p in run.executor.procs], flush=True)
""")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY), seed=3)
    root = tmp_path_factory.mktemp("sig")
    return export_model(model, ExportConfig(output=root, name="replicated", resolution=RES, split="replicated",
                                            verify=False), log=lambda _: None)[0]


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start_caller(export_dir, tmp_path):
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(export_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    workers = []
    for line in proc.stdout:  # until the runner is loaded and has answered one call
        if line.startswith("workers"):
            workers = [int(p) for p in line.split()[1:]]
        if line.strip() == "ready":
            break
    else:
        proc.wait(timeout=30)
        pytest.fail(f"the caller did not start: {proc.stderr.read()}")
    assert len(workers) == 2
    return proc, workers


def _cleanup(proc, workers):
    """Whatever a failed test left: only the processes this test started, by pid."""
    for pid in [proc.pid, *workers]:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait(timeout=30)


def test_ctrl_c_reaches_the_caller_only_and_the_runner_goes_on(export_dir, tmp_path):
    """SIGINT to the caller's process group (a terminal's Ctrl-C) while the runner is idle: the caller
    catches KeyboardInterrupt and calls again, which succeeds with the same logits; no worker prints a
    traceback (each did, and the next call failed with 'rank 2 exited (code -2)'); close ends every
    rank cleanly."""
    proc, workers = _start_caller(export_dir, tmp_path)
    try:
        time.sleep(0.5)  # idle, waiting for the next call
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        _cleanup(proc, workers)
    assert proc.returncode == 0, err
    assert "interrupted" in out and "equal" in out, (out, err)
    assert "codes 0 0" in out, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_workers_exit_when_the_caller_is_killed(export_dir, tmp_path):
    """SIGKILL to the caller alone (no close, no atexit): its workers, in their own session, must
    not be orphaned; they exit on their own. A liveness check, with a generous bound."""
    proc, workers = _start_caller(export_dir, tmp_path)
    try:
        assert all(_alive(pid) for pid in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "workers outlived their caller"
    finally:
        _cleanup(proc, workers)


def test_a_worker_whose_caller_is_gone_exits_before_the_store_would_tell_it(export_dir):
    """The parent watch alone: a worker started for a caller that is not its parent (as after the
    caller died and the worker was re-parented), pointed at a port nobody serves. Without the watch it
    retries the store for the 120 s start-up deadline; with it, it leaves within a few polls."""
    import json
    import socket

    from parnet_deploy.export import load_manifest
    from parnet_deploy.runtime.distributed import RankPlan

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = RankPlan.make(load_manifest(export_dir), None, None, "fp32")
    cfg = {"plan": plan.to_json(), "rank": 1, "directory": str(export_dir), "backend": "onnxruntime", "threads": 1,
           "port": port, "timeout_s": 5, "parent": os.getpid() + 10**6}  # no such pid: never our parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "parnet_deploy.runtime.distributed"], input=json.dumps(cfg),
                          capture_output=True, text=True, timeout=110, env=env)
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"parnet rank 1: stopping: the caller (pid {cfg['parent']}) exited"
