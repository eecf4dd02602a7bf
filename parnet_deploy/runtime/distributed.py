"""Distributed executor: one process per device over torch.distributed (gloo on CPU, NCCL on GPUs).

The official multi-GPU split (paper, Table 3): the caller's process is rank 0; it sends
the image to the ranks that need it, rank k runs the subgraphs placed on it (stream k with
its stem prefix), tensors that cross ranks travel point to point, and rank 0 runs the
fusion/head. Any placement of the manifest's DAG works the same way; every rank derives
its program (what to receive, run and send, in which order) from the same plan.

Start-up: workers are spawned, join a TCPStore rendezvous on 127.0.0.1 and build their
sessions. Shutdown: a stop message, then joins. A rank that dies makes the call raise
within ``timeout_s`` (gloo reports the closed connection, or the operation times out);
the runner is then broken and says so.

This is the one part of the runtime that imports PyTorch (for torch.distributed).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..artifacts.export_manifest import ExportManifest
from ..backends import StageTime, get_backend
from ..errors import ParnetError, UserError

STOP, RUN = 0, 1
# Start-up spawns interpreters that import ONNX Runtime and build sessions: seconds, more on a
# loaded machine. It gets its own, longer deadline; timeout_s bounds each call.
STARTUP_TIMEOUT_S = 120.0


class DistributedError(ParnetError):
    """A rank failed or did not answer in time."""


@dataclass(frozen=True)
class RankPlan:
    """Which rank runs what; the same object (pickled) drives every rank."""

    manifest: dict
    rank_of: dict[str, int]  # subgraph → rank
    device_of: dict[int, str]  # rank → "cpu" | "cuda:N"
    world: int
    precision: str

    @classmethod
    def make(cls, manifest: ExportManifest, placement: dict[str, str] | None,
             devices: dict[str, str] | None, precision: str) -> "RankPlan":
        if placement is None:  # export directory: the official split, all on this CPU
            placement = {s.name: f"r{s.stream or 0}" for s in manifest.subgraphs}
            devices = {tag: "cpu" for tag in set(placement.values())}
        home = placement.get(manifest.subgraphs[-1].name)
        order = [home] + [t for t in dict.fromkeys(placement[s.name] for s in manifest.subgraphs) if t != home]
        rank_of = {s.name: order.index(placement[s.name]) for s in manifest.subgraphs}
        device_of = {order.index(t): devices[t] for t in order}
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

    def tags(self) -> dict[str, int]:
        """A message tag per tensor that crosses ranks."""
        names = [t.name for s in self.export.subgraphs for t in s.inputs + s.outputs]
        return {n: i for i, n in enumerate(dict.fromkeys(names))}


def _torch():
    import torch
    import torch.distributed as dist

    return torch, dist


def _make_group(rank: int, world: int, host: str, port: int, nccl: bool, timeout_s: float, store=None):
    _, dist = _torch()
    timeout = datetime.timedelta(seconds=timeout_s)
    if store is None:
        store = dist.TCPStore(host, port, world, False, timeout=datetime.timedelta(seconds=STARTUP_TIMEOUT_S))
    startup = datetime.timedelta(seconds=max(timeout_s, STARTUP_TIMEOUT_S))
    if nccl:  # pragma: no cover - needs GPUs
        group = dist.ProcessGroupNCCL(store, rank, world, timeout=startup)
    else:
        group = dist.ProcessGroupGloo(store, rank, world, startup)
    group.set_timeout(timeout)  # rendezvous may take long; every operation after it may not
    return store, group


class _RankProgram:
    """What one rank does per call; shared by rank 0 and the workers."""

    def __init__(self, plan: RankPlan, rank: int, group, runners: dict, nccl: bool, timeout_s: float):
        torch, _ = _torch()
        self.torch, self.plan, self.rank, self.group = torch, plan, rank, group
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self.export = plan.export
        self.mine = [s for s in self.export.subgraphs if plan.rank_of[s.name] == rank]
        self.runners = runners
        self.tags = plan.tags()
        self.device = plan.device_of[rank] if nccl else "cpu"
        dag = self.export.dag
        image = self.export.input.name
        tensors = {t.name for s in self.export.subgraphs for t in s.inputs + s.outputs}
        self.producer = {n: 0 if dag.producer(n) == "input" else plan.rank_of[dag.producer(n)] for n in tensors}
        self.consumers = {n: {plan.rank_of[c] for c in dag.consumers(n)} for n in tensors}
        self.consumers[self.export.output.name].add(0)  # logits end on rank 0
        self.broadcast_image = any(r != 0 for r in self.consumers.get(image, ()))
        self.specs = {t.name: t for s in self.export.subgraphs for t in s.inputs + s.outputs}

    def _tensor(self, value: np.ndarray):
        t = self.torch.from_numpy(np.ascontiguousarray(value))
        return t.to(self.device) if self.device != "cpu" else t

    def _empty(self, name: str):
        spec = self.specs[name]
        return self.torch.empty(spec.shape, dtype=getattr(self.torch, str(np.dtype(spec.dtype))), device=self.device)

    def run(self, image: np.ndarray | None) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        t0 = time.perf_counter()
        name = self.export.input.name
        values: dict[str, np.ndarray] = {}
        if self.rank == 0:
            values[name] = image
        if self.broadcast_image:
            buf = self._tensor(image) if self.rank == 0 else self._empty(name)
            self.group.broadcast([buf]).wait(self.timeout)
            values[name] = buf.cpu().numpy()
        sends, times = [], []
        for spec in self.mine:
            for t in spec.inputs:
                if t.name not in values:
                    buf = self._empty(t.name)
                    self.group.recv([buf], self.producer[t.name], self.tags[t.name]).wait(self.timeout)
                    values[t.name] = buf.cpu().numpy()
            start = time.perf_counter() - t0
            out = self.runners[spec.name].infer({t.name: values[t.name] for t in spec.inputs})
            times.append(StageTime(spec.name, start, time.perf_counter() - t0))
            values.update(out)
            for t in spec.outputs:
                for dst in sorted(self.consumers.get(t.name, ())):
                    if dst != self.rank:
                        tensor = self._tensor(out[t.name])
                        sends.append((self.group.send([tensor], dst, self.tags[t.name]), tensor))
        if self.rank == 0:
            logits = self.export.output.name
            if logits not in values:
                buf = self._empty(logits)
                self.group.recv([buf], self.producer[logits], self.tags[logits]).wait(self.timeout)
                values[logits] = buf.cpu().numpy()
        for work, _keepalive in sends:
            work.wait(self.timeout)
        return values, times


def _load_runners(plan: RankPlan, rank: int, directory: Path, backend: str, threads: int | None) -> dict:
    be = get_backend(backend, threads=threads, device=plan.device_of[rank], precision=plan.precision)
    return {s.name: be.load(directory / s.file, s) for s in plan.export.subgraphs if plan.rank_of[s.name] == rank}


def worker_main() -> None:
    """Entry of a rank process (``python -m parnet_deploy.runtime.distributed``); config on stdin.

    A fresh interpreter rather than multiprocessing's spawn: the caller's ``__main__`` is
    never re-imported, so scripts without a ``__main__`` guard (and embedded interpreters,
    e.g. the C API) work.
    """
    cfg = json.loads(sys.stdin.read())
    try:
        _worker(RankPlan.from_json(cfg["plan"]), cfg["rank"], cfg["directory"], cfg["backend"], cfg["threads"],
                cfg["port"], cfg["timeout_s"])
    except Exception as e:  # rank 0 went away or timed out: leave quietly, it reports the failure
        print(f"parnet rank {cfg['rank']}: stopping: {str(e).splitlines()[0][:200]}", file=sys.stderr)
        sys.exit(1)


def _worker(plan: RankPlan, rank: int, directory: str, backend: str, threads: int | None, port: int,
            timeout_s: float) -> None:
    torch, _ = _torch()
    torch.set_num_threads(1)
    nccl = all(d.startswith("cuda") for d in plan.device_of.values())
    runners = _load_runners(plan, rank, Path(directory), backend, threads)
    store, group = _make_group(rank, plan.world, "127.0.0.1", port, nccl, timeout_s)
    program = _RankProgram(plan, rank, group, runners, nccl, timeout_s)
    ctrl = torch.zeros(1, dtype=torch.int64)
    while True:
        # waiting for the next call is not an error, however long it takes
        group.broadcast([ctrl]).wait(datetime.timedelta(days=365))
        if int(ctrl[0]) == STOP:
            break
        program.run(None)


class DistributedExecutor:
    mode = "distributed"
    gpu_time_ms = None

    def __init__(self, manifest: ExportManifest, directory: Path, backend: str, threads: int | None = None,
                 placement: dict[str, str] | None = None, devices: dict[str, str] | None = None,
                 timeout_s: float = 30.0, precision: str = "fp32"):
        torch, dist = _torch()
        if not timeout_s > 0 or timeout_s == float("inf"):
            raise UserError(f"timeout must be a finite number of seconds > 0, got {timeout_s}")
        self.plan = RankPlan.make(manifest, placement, devices, precision)
        self.timeout_s = timeout_s
        self.outputs = [t.name for t in manifest.whole.outputs]
        self.workers = self.plan.world
        self.broken: str | None = None
        nccl = all(d.startswith("cuda") for d in self.plan.device_of.values())
        per_rank = None if threads is None else max(1, threads // self.plan.world)
        runners = _load_runners(self.plan, 0, directory, backend, per_rank)
        self.store = dist.TCPStore("127.0.0.1", 0, self.plan.world, True, wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=STARTUP_TIMEOUT_S))
        self.procs: list[subprocess.Popen] = []
        for r in range(1, self.plan.world):
            proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, text=True)
            proc.stdin.write(json.dumps({"plan": self.plan.to_json(), "rank": r, "directory": str(directory),
                                         "backend": backend, "threads": per_rank, "port": self.store.port,
                                         "timeout_s": timeout_s}))
            proc.stdin.close()
            self.procs.append(proc)
        try:
            _, self.group = _make_group(0, self.plan.world, "127.0.0.1", self.store.port, nccl, timeout_s, self.store)
        except Exception as e:
            self._kill()
            raise DistributedError(f"distributed start-up failed (ranks did not join within {STARTUP_TIMEOUT_S:g} s): "
                                   f"{str(e).splitlines()[0]}") from e
        self.program = _RankProgram(self.plan, 0, self.group, runners, nccl, timeout_s)
        self._ctrl = torch.ones(1, dtype=torch.int64)
        import threading

        self._lock = threading.Lock()  # one call at a time: the ranks run in lockstep

    def _check_alive(self) -> None:
        dead = [(r, p.returncode) for r, p in enumerate(self.procs, start=1) if p.poll() is not None]
        if dead:
            self.broken = f"rank {dead[0][0]} exited (code {dead[0][1]}); close this runner and load a new one"

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        with self._lock:
            self._check_alive()
            if self.broken:
                raise DistributedError(f"distributed runner is broken: {self.broken}")
            try:
                self._ctrl[0] = RUN
                self.group.broadcast([self._ctrl]).wait(datetime.timedelta(seconds=self.timeout_s))
                values, times = self.program.run(feeds[self.program.export.input.name])
            except Exception as e:
                self._check_alive()
                self.broken = self.broken or f"a collective failed: {str(e).splitlines()[0]}"
                raise DistributedError(f"distributed call failed: {self.broken}") from e
            return {n: values[n] for n in self.outputs}, times

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.infer_timed(feeds)[0]

    def _kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)

    def close(self) -> None:
        if not self.broken:
            try:
                self._ctrl[0] = STOP
                self.group.broadcast([self._ctrl]).wait(datetime.timedelta(seconds=self.timeout_s))
            except Exception:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._kill()


if __name__ == "__main__":
    worker_main()
