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

This is the one part of the runtime that imports PyTorch (for torch.distributed).
"""

from __future__ import annotations

import datetime
import json
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
from ..errors import ParnetError, UserError

RUN, STOP = b"run", b"stop"
# Start-up spawns interpreters that import ONNX Runtime and build sessions: seconds, more on a
# loaded machine. It gets its own, longer deadline; timeout_s bounds each call.
STARTUP_TIMEOUT_S = 120.0
IDLE_FOREVER = datetime.timedelta(days=365)  # waiting for the next call is not an error


class DistributedError(ParnetError):
    """A rank failed or did not answer in time."""


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

    def tags(self) -> dict[str, int]:
        """A message tag per tensor that crosses ranks."""
        names = [t.name for s in self.export.subgraphs for t in s.inputs + s.outputs]
        return {n: i for i, n in enumerate(dict.fromkeys(names))}


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
    """The process group that carries tensors. On a GPU the device is made current and the NCCL
    communicator is connected to it here (torch's ``device_id``), before any call."""
    torch, dist = _torch()
    prefixed = dist.PrefixStore("data/", store)
    startup = datetime.timedelta(seconds=max(timeout_s, STARTUP_TIMEOUT_S))
    if device.startswith("cuda"):  # pragma: no cover - needs GPUs
        gpu = torch.device(device)
        torch.cuda.set_device(gpu)
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = startup
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


class _RankProgram:
    """What one rank does per call; shared by rank 0 and the workers. Values are torch tensors on
    the rank's data device (CPU for gloo, its GPU for NCCL)."""

    def __init__(self, plan: RankPlan, rank: int, group, runners: dict, timeout_s: float):
        torch, _ = _torch()
        self.torch, self.plan, self.rank, self.group = torch, plan, rank, group
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self.export = plan.export
        self.mine = [s for s in self.export.subgraphs if plan.rank_of[s.name] == rank]
        self.runners = runners
        self.device = torch.device(plan.device_of[rank] if plan.nccl else "cpu")
        if plan.nccl:
            host_only = [n for n, r in runners.items() if not isinstance(r, DeviceRunner)]
            if host_only:
                raise UserError(f"distributed on GPUs: NCCL carries device tensors, and the runners of {host_only} "
                                f"take host arrays only; use the torch or tensorrt backend")
        self.tags = plan.tags()
        dag = self.export.dag
        image = self.export.input.name
        tensors = {t.name for s in self.export.subgraphs for t in s.inputs + s.outputs}
        self.producer = {n: 0 if dag.producer(n) == "input" else plan.rank_of[dag.producer(n)] for n in tensors}
        self.consumers = {n: {plan.rank_of[c] for c in dag.consumers(n)} for n in tensors}
        self.consumers[self.export.output.name].add(0)  # logits end on rank 0
        self.broadcast_image = any(r != 0 for r in self.consumers.get(image, ()))
        self.specs = {t.name: t for s in self.export.subgraphs for t in s.inputs + s.outputs}

    def _empty(self, name: str):
        spec = self.specs[name]
        return self.torch.empty(spec.shape, dtype=getattr(self.torch, str(np.dtype(spec.dtype))), device=self.device)

    def _recv(self, name: str):
        buf = self._empty(name)
        self.group.recv([buf], self.producer[name], self.tags[name]).wait(self.timeout)
        return buf

    def _infer(self, name: str, feeds: dict) -> dict:
        runner = self.runners[name]
        if isinstance(runner, DeviceRunner):
            return runner.infer_tensors(feeds)
        out = runner.infer({n: t.numpy() for n, t in feeds.items()})  # gloo: CPU tensors share numpy's memory
        return {n: self.torch.from_numpy(np.ascontiguousarray(v)) for n, v in out.items()}

    def run(self, image: np.ndarray | None) -> tuple[dict, list[StageTime]]:
        t0 = time.perf_counter()
        name = self.export.input.name
        values: dict = {}
        if self.rank == 0:
            values[name] = self.torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        if self.broadcast_image:
            buf = values[name] if self.rank == 0 else self._empty(name)
            self.group.broadcast([buf]).wait(self.timeout)
            values[name] = buf
        sends, times = [], []
        for spec in self.mine:
            for t in spec.inputs:
                if t.name not in values:
                    values[t.name] = self._recv(t.name)
            start = time.perf_counter() - t0
            out = self._infer(spec.name, {t.name: values[t.name] for t in spec.inputs})
            times.append(StageTime(spec.name, start, time.perf_counter() - t0))
            values.update(out)
            for t in spec.outputs:
                for dst in sorted(self.consumers.get(t.name, ())):
                    if dst != self.rank:
                        tensor = out[t.name].contiguous()
                        sends.append((self.group.send([tensor], dst, self.tags[t.name]), tensor))
        if self.rank == 0:
            logits = self.export.output.name
            if logits not in values:
                values[logits] = self._recv(logits)
        for work, _keepalive in sends:
            work.wait(self.timeout)
        return values, times


def _load_runners(plan: RankPlan, rank: int, directory: Path, backend: str, threads: int | None) -> dict:
    be = get_backend(backend, threads=threads, device=plan.device_of[rank], precision=plan.precision)
    return {s.name: be.load(directory / s.file, s) for s in plan.export.subgraphs if plan.rank_of[s.name] == rank}


def _call_key(call: int) -> str:
    return f"call/{call}"


def worker_main() -> None:
    """Entry of a rank process (``python -m parnet_deploy.runtime.distributed``); config on stdin.

    A fresh interpreter rather than multiprocessing's spawn: the caller's ``__main__`` is
    never re-imported, so scripts without a ``__main__`` guard work.
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
    torch, dist = _torch()
    torch.set_num_threads(1)
    runners = _load_runners(plan, rank, Path(directory), backend, threads)
    store = dist.TCPStore("127.0.0.1", port, plan.world, False,
                          timeout=datetime.timedelta(seconds=STARTUP_TIMEOUT_S))
    group = _data_group(store, rank, plan.world, plan.device_of[rank], timeout_s)
    program = _RankProgram(plan, rank, group, runners, timeout_s)
    try:
        call = 0
        while True:
            store.wait([_call_key(call)], IDLE_FOREVER)  # raises when rank 0 (the store) is gone
            if store.get(_call_key(call)) == STOP:
                break
            program.run(None)
            call += 1
    finally:
        _shutdown(group)


class DistributedExecutor:
    mode = "distributed"
    gpu_time_ms = None

    def __init__(self, manifest: ExportManifest, directory: Path, backend: str, threads: int | None = None,
                 placement: dict[str, str] | None = None, devices: dict[str, str] | None = None,
                 timeout_s: float = 30.0, precision: str = "fp32", device: str | None = None):
        _, dist = _torch()
        if not timeout_s > 0 or timeout_s == float("inf"):
            raise UserError(f"timeout must be a finite number of seconds > 0, got {timeout_s}")
        self.plan = RankPlan.make(manifest, placement, devices, precision, device)
        self.timeout_s = timeout_s
        self.outputs = [t.name for t in manifest.whole.outputs]
        self.workers = self.plan.world
        self.broken: str | None = None
        self.calls = 0
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
            self.group = _data_group(self.store, 0, self.plan.world, self.plan.device_of[0], timeout_s)
        except Exception as e:
            self._kill()
            raise DistributedError(f"distributed start-up failed (ranks did not join within {STARTUP_TIMEOUT_S:g} s): "
                                   f"{str(e).splitlines()[0]}") from e
        self.program = _RankProgram(self.plan, 0, self.group, runners, timeout_s)
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
                self.store.set(_call_key(self.calls), RUN)
                values, times = self.program.run(feeds[self.program.export.input.name])
                out = {n: values[n].cpu().numpy() for n in self.outputs}
            except Exception as e:
                self._check_alive()
                self.broken = self.broken or f"a transfer failed: {str(e).splitlines()[0]}"
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
        """Stop the workers (they shut their groups down and exit 0), then shut rank 0's group down."""
        with self._lock:
            if not self.broken:
                self.store.set(_call_key(self.calls), STOP)
            for p in self.procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            self._kill()
            _shutdown(self.group, abort=self.broken is not None)
            self.broken = self.broken or "closed"


if __name__ == "__main__":
    worker_main()
