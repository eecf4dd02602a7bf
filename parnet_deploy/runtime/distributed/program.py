"""What one rank does per call, shared by rank 0 and the workers, and the loading of its runners."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np

from ...backends import StageTime, get_backend
from ...backends.base import DeviceRunner
from ...errors import UserError
from .group import _torch
from .plan import RankPlan
from .schedule import schedule


class _RankProgram:
    """What one rank does per call (:func:`schedule`); shared by rank 0 and the workers. Values are
    torch tensors on the rank's data device (CPU for gloo, its GPU for NCCL), in the dtypes the
    manifest declares.

    What a rank receives (a broadcast input, a transfer) lands in a buffer of its own, sized for the
    export's largest batch once; a call at batch ``b`` receives into (and hands its runners) the
    view of the buffer's first ``b`` rows. Rank 0 knows each call's batch from its feeds and tells
    the workers in the call's control message (:func:`~.worker.call_message`)."""

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
        self.batch = self.export.batch  # the bounded batch axis, or None (static shapes)
        self.buffers: dict = {}  # tensor name -> receive buffer at the largest batch, made on first use

    def _dtype(self, name: str):
        return getattr(self.torch, str(np.dtype(self.specs[name].dtype)))

    def _received(self, name: str, batch: int | None):
        """Where ``name`` is received at ``batch``: the first rows of its buffer (allocated once)."""
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = self.torch.empty(self.specs[name].max_shape, dtype=self._dtype(name),
                                                        device=self.device)
        return buf if batch is None or self.specs[name].batch is None else buf[:batch]

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
        for name in self.runners:  # at the largest batch of a dynamic export: what later calls may need
            self._infer(name, {t.name: self.torch.zeros(t.max_shape, dtype=self._dtype(t.name), device=self.device)
                               for t in self.subgraphs[name].inputs})

    def run(self, feeds: dict[str, np.ndarray] | None, timeout: datetime.timedelta | None = None,
            batch: int | None = None) -> tuple[dict, list[StageTime]]:
        """One call: ``feeds`` (the graph's inputs by name) on rank 0, None on the others; ``batch``:
        the call's batch (a dynamic export; rank 0 checked it against the bounds and sent it)."""
        timeout = timeout or self.timeout
        t0 = time.perf_counter()
        values: dict = {}
        if self.rank == 0:
            values = {name: self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self._dtype(name))
                      for name, x in feeds.items()}
        for name in self.plan.broadcast_inputs:
            buf = values[name] if self.rank == 0 else self._received(name, batch)
            self.group.broadcast([buf]).wait(timeout)
            values[name] = buf
        sends, times = [], []
        for transfers, level in self.steps:
            for t in transfers:
                if t.src == self.rank:
                    tensor = values[t.tensor]
                    sends.append((self.group.send([tensor], t.dst, self.tags[t.tensor]), tensor))
                elif t.dst == self.rank:
                    buf = self._received(t.tensor, batch)
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
