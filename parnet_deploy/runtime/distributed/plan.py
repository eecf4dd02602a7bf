"""Which rank runs what: :class:`RankPlan` (the same object, as JSON, drives every rank) and the
canonical device names. Imports no PyTorch (the official split on GPUs counts them lazily)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property

from ...artifacts.export_manifest import ExportManifest
from ...errors import UserError


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
             devices: dict[str, str] | None, precision: str, device: str | None = None) -> RankPlan:
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
    def from_json(cls, text: str) -> RankPlan:
        d = json.loads(text)
        return cls(d["manifest"], d["rank_of"], {int(k): v for k, v in d["device_of"].items()}, d["world"],
                   d["precision"])

    @cached_property
    def export(self) -> ExportManifest:
        return ExportManifest.parse(self.manifest)

    @property
    def nccl(self) -> bool:
        return all(d.startswith("cuda") for d in self.device_of.values())

    @cached_property
    def broadcast_inputs(self) -> tuple[str, ...]:
        """Rank 0 holds the graph's inputs; each one a subgraph on another rank reads is broadcast."""
        dag = self.export.dag
        return tuple(t.name for t in self.export.whole.inputs
                     if any(self.rank_of[c] != 0 for c in dag.consumers(t.name)))

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
    from .group import _torch  # the one place a plan needs PyTorch: counting the GPUs

    torch, _ = _torch()
    if torch.cuda.device_count() < world:
        raise UserError(f"distributed on cuda: the official split needs {world} GPUs (one per rank), "
                        f"{torch.cuda.device_count()} here")
    return f"cuda:{rank}"
