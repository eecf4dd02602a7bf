"""Distributed executor: one process per device over torch.distributed (gloo on CPU, NCCL on GPUs).

The official multi-GPU split (paper, Table 3): the caller's process is rank 0; it sends
the image to the ranks that need it, rank k runs the subgraphs placed on it (stream k with
its stem prefix), tensors that cross ranks travel point to point, and rank 0 runs the
fusion/head. Any placement of the manifest's DAG works the same way; every rank derives
its program (what to receive, run and send, in which order) from the same plan.

Two channels:

- control (run / stop) goes through the TCPStore, never through a collective: a worker waits
  for the next call as long as it likes, and NCCL's watchdog (which kills a rank waiting in a
  collective longer than the group's timeout) never sees an idle gap;
- data (the image, stream outputs) goes through the process group: gloo with CPU tensors, or
  NCCL with tensors that stay on the GPU. Runners that can take and return device tensors
  (:class:`~parnet_deploy.backends.base.DeviceRunner`: torch, TensorRT) are called with them;
  NCCL needs such runners, and nothing crosses ranks through the host.

Start-up: workers are spawned, join a TCPStore rendezvous on 127.0.0.1 and build their
sessions; on GPUs each rank makes its device current and connects its communicator to it
before the first call. Shutdown: a stop message, then each rank shuts its group down and
exits. A rank that dies makes the call raise within ``timeout_s`` (its exit is seen at the
next call, or the transfer fails or times out); the runner is then broken and says so.

Signals: workers run in their own session, so a terminal's Ctrl-C (SIGINT to the foreground
process group) reaches the caller only, and rank 0 decides: an idle runner goes on, an
interrupted call breaks it, and close() ends the workers. Workers ignore SIGINT, and each one
watches its caller: a worker whose caller died without closing it (SIGKILL, a crash) exits
within ``PARENT_POLL_S``; it is not left running in its own session.

This is the one part of the runtime that imports PyTorch (for torch.distributed).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..artifacts.export_manifest import ExportManifest
from ..backends import StageTime, get_backend
from ..backends.base import DeviceRunner
from ..errors import DistributedError, ParnetError, UserError

RUN, STOP = b"run", b"stop"
# Start-up spawns interpreters that import ONNX Runtime and build sessions: seconds, more on a
# loaded machine. It gets its own, longer deadline; timeout_s bounds each call.
STARTUP_TIMEOUT_S = 120.0
STARTUP = datetime.timedelta(seconds=STARTUP_TIMEOUT_S)  # also bounds the first (warm-up) call
IDLE_FOREVER = datetime.timedelta(days=365)  # waiting for the next call is not an error
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1e-3, 1e7
CLOSE_TIMEOUT_S = 10.0  # for all workers together to exit after a stop
PARENT_POLL_S = 0.5  # how often a worker checks that its caller (rank 0's process) is still there


@dataclass(frozen=True)
class RankPlan:
    """Which rank runs what; the same object (as JSON) drives every rank."""

    manifest: dict
    rank_of: dict[str, int]  # subgraph → rank
    device_of: dict[int, str]  # rank → "cpu" | "cuda:N"
    world: int
    precision: str

    @classmethod
    def make(cls, manifest: ExportManifest, placement: dict[str, str] | None,
             devices: dict[str, str] | None, precision: str, device: str | None = None) -> "RankPlan":
        if placement is None:  # export directory: the official split, rank k on cuda:k or all on this CPU
            placement = {s.name: f"r{s.stream or 0}" for s in manifest.subgraphs}
            tags = sorted(set(placement.values()))
            devices = {t: _official_device(device, i, len(tags)) for i, t in enumerate(tags)}
        devices = {tag: _canonical_device(d) for tag, d in devices.items()}
        home = placement.get(manifest.subgraphs[-1].name)
        order = [home] + [t for t in dict.fromkeys(placement[s.name] for s in manifest.subgraphs) if t != home]
        rank_of = {s.name: order.index(placement[s.name]) for s in manifest.subgraphs}
        device_of = {order.index(t): devices[t] for t in order}
        kinds = {d.split(":")[0] for d in device_of.values()}
        if len(kinds) > 1:
            raise UserError(f"distributed: every rank on a CPU (gloo) or every rank on a GPU (NCCL), not a mix: "
                            f"{device_of}")
        gpus = [d for d in device_of.values() if d.startswith("cuda")]
        if len(set(gpus)) != len(gpus):  # NCCL refuses two ranks on one GPU
            raise UserError(f"distributed: one rank per GPU; the plan puts two ranks on one GPU: {device_of}")
        return cls(manifest.to_dict(), rank_of, device_of, len(order), precision)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RankPlan":
        d = json.loads(text)
        return cls(d["manifest"], d["rank_of"], {int(k): v for k, v in d["device_of"].items()}, d["world"],
                   d["precision"])

    @cached_property
    def export(self) -> ExportManifest:
        return ExportManifest.parse(self.manifest)

    @property
    def nccl(self) -> bool:
        return all(d.startswith("cuda") for d in self.device_of.values())

    @property
    def broadcasts_image(self) -> bool:
        """Rank 0 holds the image; it is broadcast when a subgraph on another rank reads it."""
        return any(self.rank_of[c] != 0 for c in self.export.dag.consumers(self.export.input.name))

    def tags(self) -> dict[str, int]:
        """A message tag per tensor that crosses ranks."""
        names = [t.name for s in self.export.subgraphs for t in s.inputs + s.outputs]
        return {n: i for i, n in enumerate(dict.fromkeys(names))}


def _canonical_device(device: str) -> str:
    """``cpu`` or ``cuda:N`` (``cuda`` is ``cuda:0``): one GPU has one name, so two ranks on it are seen."""
    kind, _, index = device.partition(":")
    if device == "cpu" or (kind == "cuda" and (index == "" or index.isdigit())):
        return "cpu" if device == "cpu" else f"cuda:{int(index or 0)}"
    raise UserError(f"distributed: unknown device {device!r}; use cpu or cuda:N")


def _official_device(device: str | None, rank: int, world: int) -> str:
    if device is None or device == "cpu":
        return "cpu"
    if device != "cuda":
        raise UserError(f"distributed on an export: device 'cpu' or 'cuda' (rank k on cuda:k), not {device!r}")
    torch, _ = _torch()
    if torch.cuda.device_count() < world:
        raise UserError(f"distributed on cuda: the official split needs {world} GPUs (one per rank), "
                        f"{torch.cuda.device_count()} here")
    return f"cuda:{rank}"


def _torch():
    import torch
    import torch.distributed as dist

    return torch, dist


def _data_group(store, rank: int, world: int, device: str, timeout_s: float):
    """The process group that carries tensors. On a GPU the NCCL communicator is connected to the
    rank's device here (torch's ``device_id``), before any call; a worker also makes it current
    (rank 0, the caller's process, keeps its current device)."""
    torch, dist = _torch()
    prefixed = dist.PrefixStore("data/", store)
    startup = datetime.timedelta(seconds=max(timeout_s, STARTUP_TIMEOUT_S))
    if device.startswith("cuda"):  # pragma: no cover - needs GPUs
        # read when the group is made: wait(timeout) then blocks the CPU and raises on timeout, and
        # no watchdog runs (it would end the process instead of the call raising DistributedError)
        os.environ["TORCH_NCCL_BLOCKING_WAIT"] = "1"
        # every transfer is one send or recv in the schedule's order, on purpose: don't warn about it
        os.environ.setdefault("TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING", "0")
        gpu = torch.device(device)
        if rank != 0:
            torch.cuda.set_device(gpu)
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = startup
        with torch.cuda.device(gpu):
            group = dist.ProcessGroupNCCL(prefixed, rank, world, options)
            group.eager_connect_single_device(gpu)
    else:
        group = dist.ProcessGroupGloo(prefixed, rank, world, startup)
    group.set_timeout(datetime.timedelta(seconds=timeout_s))  # rendezvous may take long; transfers may not
    return group


def _shutdown(group, abort: bool = False) -> None:
    """Release the communicators; ``abort`` when a peer is gone (a clean shutdown could wait for it)."""
    stop = getattr(group, "abort" if abort else "shutdown", None)
    if stop is not None:
        stop()


@dataclass(frozen=True)
class Transfer:
    tensor: str
    src: int
    dst: int


def schedule(plan: RankPlan) -> tuple[tuple[tuple[Transfer, ...], tuple[str, ...]], ...]:
    """The program every rank follows: per DAG level, the tensors that must cross ranks before it
    (in one global order), then the level's subgraphs. Every rank issues its sends and receives in
    that same order, so the k-th transfer between two ranks matches on both sides and none waits
    on a peer that waits on it (NCCL point-to-point blocks until the peer posts its half). The
    logits, if made elsewhere, travel to rank 0 in a last step."""
    export = plan.export
    dag = export.dag
    image = export.input.name
    specs = {s.name: s for s in export.subgraphs}
    producer = {t.name: plan.rank_of[s.name] for s in export.subgraphs for t in s.outputs}
    have = {r: ({image} if r == 0 or plan.broadcasts_image else set()) for r in range(plan.world)}
    steps = []
    for level in dag.levels():
        transfers = []
        for name in level:
            dst = plan.rank_of[name]
            for t in specs[name].inputs:
                if t.name not in have[dst]:
                    transfers.append(Transfer(t.name, producer[t.name], dst))
                    have[dst].add(t.name)
        steps.append((tuple(transfers), tuple(level)))
        for name in level:
            have[plan.rank_of[name]].update(t.name for t in specs[name].outputs)
    logits = export.output.name
    if logits not in have[0]:
        steps.append(((Transfer(logits, producer[logits], 0),), ()))
    return tuple(steps)


class _RankProgram:
    """What one rank does per call (:func:`schedule`); shared by rank 0 and the workers. Values are
    torch tensors on the rank's data device (CPU for gloo, its GPU for NCCL), in the dtypes the
    manifest declares."""

    def __init__(self, plan: RankPlan, rank: int, group, runners: dict, timeout_s: float):
        torch, _ = _torch()
        self.torch, self.plan, self.rank, self.group = torch, plan, rank, group
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self.export = plan.export
        self.runners = runners
        self.device = torch.device(plan.device_of[rank] if plan.nccl else "cpu")
        if plan.nccl:
            host_only = [n for n, r in runners.items() if not isinstance(r, DeviceRunner)]
            if host_only:
                raise UserError(f"distributed on GPUs: NCCL carries device tensors, and the runners of {host_only} "
                                f"take host arrays only; use the torch or tensorrt backend")
        self.tags = plan.tags()
        self.steps = schedule(plan)
        self.specs = {t.name: t for s in self.export.subgraphs for t in s.inputs + s.outputs}
        self.subgraphs = {s.name: s for s in self.export.subgraphs}

    def _dtype(self, name: str):
        return getattr(self.torch, str(np.dtype(self.specs[name].dtype)))

    def _empty(self, name: str):
        return self.torch.empty(self.specs[name].shape, dtype=self._dtype(name), device=self.device)

    def _infer(self, name: str, feeds: dict) -> dict:
        runner = self.runners[name]
        if isinstance(runner, DeviceRunner):
            out = runner.infer_tensors(feeds)
        else:  # gloo: CPU tensors share numpy's memory
            out = {n: self.torch.from_numpy(np.ascontiguousarray(v))
                   for n, v in runner.infer({n: t.numpy() for n, t in feeds.items()}).items()}
        # what crosses ranks has the manifest's dtype on both sides (a runner may compute in another)
        return {n: v.to(self._dtype(n)).contiguous() for n, v in out.items()}

    def warm_up(self) -> None:
        """Each runner once on zeros, before any peer waits on this rank (first calls allocate,
        pick kernels and, on GPUs, can take longer than a call's timeout)."""
        for name, runner in self.runners.items():
            self._infer(name, {t.name: self.torch.zeros(t.shape, dtype=self._dtype(t.name), device=self.device)
                               for t in self.subgraphs[name].inputs})

    def run(self, image: np.ndarray | None, timeout: datetime.timedelta | None = None) -> tuple[dict, list[StageTime]]:
        timeout = timeout or self.timeout
        t0 = time.perf_counter()
        name = self.export.input.name
        values: dict = {}
        if self.rank == 0:
            values[name] = self.torch.from_numpy(np.ascontiguousarray(image)).to(self.device, self._dtype(name))
        if self.plan.broadcasts_image:
            buf = values[name] if self.rank == 0 else self._empty(name)
            self.group.broadcast([buf]).wait(timeout)
            values[name] = buf
        sends, times = [], []
        for transfers, level in self.steps:
            for t in transfers:
                if t.src == self.rank:
                    tensor = values[t.tensor]
                    sends.append((self.group.send([tensor], t.dst, self.tags[t.tensor]), tensor))
                elif t.dst == self.rank:
                    buf = self._empty(t.tensor)
                    self.group.recv([buf], t.src, self.tags[t.tensor]).wait(timeout)
                    values[t.tensor] = buf
            for sub in level:
                if self.plan.rank_of[sub] != self.rank:
                    continue
                start = time.perf_counter() - t0
                values.update(self._infer(sub, {t.name: values[t.name] for t in self.subgraphs[sub].inputs}))
                if self.device.type == "cuda":  # pragma: no cover - needs GPUs
                    self.torch.cuda.current_stream(self.device).synchronize()  # a stage's time, not its enqueue's
                times.append(StageTime(sub, start, time.perf_counter() - t0))
        for work, _keepalive in sends:
            work.wait(timeout)
        return values, times


def _load_runners(plan: RankPlan, rank: int, directory: Path, backend: str, threads: int | None) -> dict:
    be = get_backend(backend, threads=threads, device=plan.device_of[rank], precision=plan.precision)
    return {s.name: be.load(directory / s.file, s) for s in plan.export.subgraphs if plan.rank_of[s.name] == rank}


def _call_key(call: int) -> str:
    return f"call/{call}"


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
            if store.get(_call_key(call)) == STOP:
                stopped = True
                break
            program.run(None, STARTUP if call == 0 else None)
            call += 1
    finally:
        # a clean NCCL shutdown waits for every peer's: only when rank 0 asked for it
        _shutdown(group, abort=not stopped)


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
            proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, text=True,
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
            self.store.set(_call_key(0), RUN)
            self.program.run(np.zeros(manifest.input.shape, np.float32), STARTUP)
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
        with self._lock:
            self._check_alive()
            if self.broken:
                raise DistributedError(f"distributed runner is broken: {self.broken}")
            try:
                self.store.set(_call_key(self.calls), RUN)
                values, times = self.program.run(feeds[self.program.export.input.name])
                out = {n: values[n].cpu().numpy() for n in self.outputs}
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


if __name__ == "__main__":
    worker_main()
