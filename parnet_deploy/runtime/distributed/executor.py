"""Rank 0, in the caller's process: starts the workers, runs its own part of every call, watches
the ranks and closes them (:class:`DistributedExecutor`)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ...artifacts.export_manifest import ExportManifest, batch_of
from ...backends import StageTime
from ...errors import DistributedError, UserError
from .group import STARTUP, STARTUP_TIMEOUT_S, _data_group, _shutdown, _torch
from .plan import RankPlan
from .program import _load_runners, _RankProgram
from .worker import STOP, WORKER_MODULE, _call_key, _error_key, _first_line, _ready_key, call_message

MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1e-3, 1e7
CLOSE_TIMEOUT_S = 10.0  # for all workers together to exit after a stop


class DistributedExecutor:
    mode = "distributed"
    gpu_time_ms = None

    def __init__(self, manifest: ExportManifest, directory: Path, backend: str, threads: int | None = None,
                 placement: dict[str, str] | None = None, devices: dict[str, str] | None = None,
                 timeout_s: float = 30.0, precision: str = "fp32", device: str | None = None):
        _, dist = _torch()
        if not MIN_TIMEOUT_S <= timeout_s <= MAX_TIMEOUT_S:  # below 1 µs, gloo's timeout would be 0: forever
            raise UserError(f"timeout must be between {MIN_TIMEOUT_S:g} and {MAX_TIMEOUT_S:g} seconds, got {timeout_s}")
        self.plan = RankPlan.make(manifest, placement, devices, precision, device)
        self.timeout_s = timeout_s
        self.inputs = manifest.whole.inputs
        self.outputs = [t.name for t in manifest.whole.outputs]
        self.workers = self.plan.world
        self.broken: str | None = None
        self.calls = 0
        per_rank = None if threads is None else max(1, threads // self.plan.world)
        self.program = _RankProgram(self.plan, 0, None, _load_runners(self.plan, 0, directory, backend, per_rank),
                                    timeout_s)
        self.program.warm_up()
        self.store = dist.TCPStore("127.0.0.1", 0, self.plan.world, True, wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=STARTUP_TIMEOUT_S))
        self.procs: list[subprocess.Popen] = []
        for r in range(1, self.plan.world):
            # TORCH_CPP_LOG_LEVEL: a worker whose rank 0 is gone says so in one line, not a C++ stack.
            # Its own session: a terminal's Ctrl-C goes to the caller's process group, not to the workers.
            proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE, text=True,
                                    env={**os.environ, "TORCH_CPP_LOG_LEVEL": "ERROR"}, start_new_session=True)
            proc.stdin.write(json.dumps({"plan": self.plan.to_json(), "rank": r, "directory": str(directory),
                                         "backend": backend, "threads": per_rank, "port": self.store.port,
                                         "timeout_s": timeout_s, "parent": os.getpid()}))
            proc.stdin.close()
            self.procs.append(proc)
        self._lock = threading.Lock()  # one call at a time: the ranks run in lockstep
        self._closed = False
        try:
            self._wait_until_ready()
            self.program.group = self.group = _data_group(self.store, 0, self.plan.world, self.plan.device_of[0],
                                                          timeout_s)
            # a first call on zeros, under the start-up deadline: connections between ranks are made here
            first = manifest.batch.min if manifest.batch is not None else None  # the smallest batch: quick
            self.store.set(_call_key(0), call_message(first))
            self.program.run({t.name: np.zeros(t.shape_at(first), t.dtype) for t in manifest.whole.inputs}, STARTUP,
                             first)
            self.store.delete_key(_call_key(0))
            self.calls = 1
        except BaseException as e:  # Ctrl-C included: no worker outlives a failed start-up
            self._kill()
            self._release()
            if isinstance(e, DistributedError) or not isinstance(e, Exception):
                raise
            raise DistributedError(f"distributed start-up failed: {self._worker_error() or _first_line(e)}") from e

    def _wait_until_ready(self) -> None:
        """Until every worker has loaded and warmed up its runners; a worker that exits says so at once."""
        keys = [_ready_key(r) for r in range(1, self.plan.world)]
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.store.check(keys):
            dead = self._exited()
            if dead:
                raise DistributedError(f"distributed start-up failed: rank {dead[0][0]} exited (code {dead[0][1]}) "
                                       f"while loading: {self._worker_error() or 'its message is above'}")
            if time.monotonic() > deadline:
                raise DistributedError(f"distributed start-up failed: ranks not ready within {STARTUP_TIMEOUT_S:g} s")
            time.sleep(0.02)

    def _exited(self) -> list[tuple[int, int]]:
        """(rank, exit code) of every worker that has exited."""
        return [(r, p.returncode) for r, p in enumerate(self.procs, start=1) if p.poll() is not None]

    def _worker_error(self) -> str | None:
        """What a worker reported before it stopped (it writes its exception's first line to the store)."""
        for r in range(1, self.plan.world):
            try:
                if self.store.check([_error_key(r)]):
                    return f"rank {r}: {self.store.get(_error_key(r)).decode(errors='replace')}"
            except Exception:  # the store itself failing must not hide the original error
                return None
        return None

    def _check_alive(self, grace_s: float = 0.0) -> None:
        """A worker that exited breaks the runner; ``grace_s``: after a failed transfer, give a dying
        worker that long to be reaped, so the message names the rank and not the socket error."""
        deadline = time.monotonic() + grace_s
        while True:
            dead = self._exited()
            if dead or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if dead:
            detail = self._worker_error()
            self.broken = (f"rank {dead[0][0]} exited (code {dead[0][1]}){': ' + detail if detail else ''}; "
                           f"close this runner and load a new one")

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        # a batch outside the bounds: refused before any rank hears of the call
        batch = batch_of(self.inputs, feeds, "distributed")
        with self._lock:
            self._check_alive()
            if self.broken:
                raise DistributedError(f"distributed runner is broken: {self.broken}")
            try:
                self.store.set(_call_key(self.calls), call_message(batch))
                values, times = self.program.run(feeds, None, batch)
                # copies: what rank 0 received lives in its buffers, which the next call overwrites
                out = {n: np.array(values[n].cpu().numpy()) for n in self.outputs}
            except BaseException as e:  # the ranks are out of step now, whatever interrupted the call
                if not isinstance(e, Exception):
                    self.broken = f"a call was interrupted ({type(e).__name__})"
                    raise
                self._check_alive(grace_s=0.5)
                detail = self._worker_error()
                self.broken = self.broken or f"a transfer failed: {detail or _first_line(e)}"
                raise DistributedError(f"distributed call failed: {self.broken}") from e
            # every rank read this call's key before its part reached rank 0's logits
            self.store.delete_key(_call_key(self.calls))
            self.calls += 1
            return out, times

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.infer_timed(feeds)[0]

    def _kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)

    def close(self) -> None:
        """Tell the workers to stop, shut rank 0's group down (a worker's shutdown may wait for its
        peers'), then wait for the workers to exit 0 (10 s in all) and kill those that do not. A
        broken runner's workers are killed at once. Releases the store, group and sessions. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._check_alive()  # a worker that died while idle: abort, not a shutdown that waits for it
            try:
                if not self.broken:
                    self.store.set(_call_key(self.calls), STOP)
                _shutdown(self.group, abort=self.broken is not None)
            except Exception as e:  # the workers are stopped below either way
                print(f"parnet: closing the process group: {_first_line(e)}", file=sys.stderr)
            finally:
                deadline = time.monotonic() + (0 if self.broken else CLOSE_TIMEOUT_S)
                for p in self.procs:
                    try:
                        p.wait(timeout=max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        pass
                self._kill()
                self.broken = self.broken or "closed"
                self._release()

    def _release(self) -> None:
        for runner in getattr(self.program, "runners", {}).values():
            runner.close()
        self.program = self.group = self.store = None
