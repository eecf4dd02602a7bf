"""A worker (rank k > 0) process: its entry, the watch on its caller, and the serve loop. Control
(run / stop) goes through the TCPStore under the keys below, never through a collective."""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .group import STARTUP, STARTUP_TIMEOUT_S, _data_group, _shutdown, _torch
from .plan import RankPlan
from .program import _load_runners, _RankProgram

RUN, STOP = b"run", b"stop"
IDLE_FOREVER = datetime.timedelta(days=365)  # waiting for the next call is not an error
PARENT_POLL_S = 0.5  # how often a worker checks that its caller (rank 0's process) is still there
# what a worker is started as: ``python -m`` this package runs its __main__, i.e. worker_main()
WORKER_MODULE = "parnet_deploy.runtime.distributed"


def _call_key(call: int) -> str:
    return f"call/{call}"


def call_message(batch: int | None) -> bytes:
    """Rank 0's control message for one call: ``run``, or ``run:N`` with a dynamic export's batch
    (every rank sizes its receives by it: a view of its buffers at N rows)."""
    return RUN if batch is None else RUN + b":" + str(batch).encode()


def call_batch(message: bytes) -> int | None:
    """The batch of a ``run`` message (None: static shapes)."""
    head, _, batch = message.partition(b":")
    if head != RUN or (batch and not batch.isdigit()):
        raise ValueError(f"unexpected control message {message[:40]!r}")
    return int(batch) if batch else None


def _ready_key(rank: int) -> str:
    return f"ready/{rank}"


def _error_key(rank: int) -> str:
    return f"error/{rank}"


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:300]


def worker_main() -> None:
    """Entry of a rank process (``python -m parnet_deploy.runtime.distributed``); config on stdin.

    A fresh interpreter rather than multiprocessing's spawn: the caller's ``__main__`` is
    never re-imported, so scripts without a ``__main__`` guard work.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # rank 0 decides; a worker never takes Ctrl-C itself
    cfg = json.loads(sys.stdin.read())
    _watch_parent(cfg["parent"], cfg["rank"])
    try:
        _worker(RankPlan.from_json(cfg["plan"]), cfg["rank"], cfg["directory"], cfg["backend"], cfg["threads"],
                cfg["port"], cfg["timeout_s"])
    except Exception as e:  # rank 0 went away or timed out: leave quietly, it reports the failure
        print(f"parnet rank {cfg['rank']}: stopping: {_first_line(e)}", file=sys.stderr, flush=True)
        os._exit(1)  # no interpreter teardown: a process group's destructor could wait for peers that are gone


def _watch_parent(parent: int, rank: int) -> None:
    """Exit when the caller is gone. A worker is in its own session (no terminal signal reaches it),
    and a caller killed outright closes nothing; when it dies the worker is re-parented, so
    ``getppid()`` changes. Polled from a daemon thread: PR_SET_PDEATHSIG would fire when the
    caller's *thread* that started the worker exits, not the caller."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        print(f"parnet rank {rank}: stopping: the caller (pid {parent}) exited", file=sys.stderr, flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="parnet-parent-watch", daemon=True).start()


def _worker(plan: RankPlan, rank: int, directory: str, backend: str, threads: int | None, port: int,
            timeout_s: float) -> None:
    torch, dist = _torch()
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, plan.world, False,
                          timeout=datetime.timedelta(seconds=STARTUP_TIMEOUT_S))
    try:
        _serve(plan, rank, store, _load_runners(plan, rank, Path(directory), backend, threads), timeout_s)
    except Exception as e:  # rank 0 reports it: this rank's message, not just an exit code
        try:
            store.set(_error_key(rank), _first_line(e))
        except Exception:  # rank 0 (the store) is gone: nobody to tell
            pass
        raise


def _serve(plan: RankPlan, rank: int, store, runners: dict, timeout_s: float) -> None:
    """Warm up, report ready, connect, then run calls until rank 0 says stop."""
    program = _RankProgram(plan, rank, None, runners, timeout_s)
    program.warm_up()
    store.set(_ready_key(rank), b"1")  # rank 0 connects only when every rank got this far
    program.group = group = _data_group(store, rank, plan.world, plan.device_of[rank], timeout_s)
    stopped = False
    try:
        call = 0
        while True:
            store.wait([_call_key(call)], IDLE_FOREVER)  # raises when rank 0 (the store) is gone
            message = store.get(_call_key(call))
            if message == STOP:
                stopped = True
                break
            program.run(None, STARTUP if call == 0 else None, call_batch(message))
            call += 1
    finally:
        # a clean NCCL shutdown waits for every peer's: only when rank 0 asked for it
        _shutdown(group, abort=not stopped)
