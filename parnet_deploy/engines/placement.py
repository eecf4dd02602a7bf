"""Placement of subgraphs on devices: minimise the predicted critical path.

The prediction is a list schedule of the DAG: each device runs its subgraphs one at a time
in execution order; a subgraph starts when its device is free and its inputs have arrived;
an input produced on another device arrives after ``bytes / bandwidth + latency``. The image
starts on the first device and the logits must end there. With at most a handful of
subgraphs and devices every assignment is tried (3 devices, 5 subgraphs: 243).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts.files import MAX_MANIFEST_BYTES, loads_strict
from ..artifacts.build_records import Placement
from ..artifacts.export_manifest import ExportManifest, SubgraphSpec, TensorSpec
from ..errors import UserError


@dataclass(frozen=True)
class Link:
    """Cost of moving a tensor between two devices (defaults: PCIe 4.0 x16, measured-ish)."""

    gbytes_per_s: float = 20.0
    latency_ms: float = 0.01

    def ms(self, nbytes: int) -> float:
        return self.latency_ms + nbytes / (self.gbytes_per_s * 1e9) * 1e3


def tensor_bytes(t: TensorSpec) -> int:
    return int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize


def simulate(subgraphs: list[SubgraphSpec], assignment: dict[str, str], cost_ms: dict[tuple[str, str], float],
             link: Link, home: str, graph_inputs: list[str], graph_outputs: list[str]) -> Placement:
    """Predicted latency of one assignment, and the chain that determines it."""
    ready: dict[str, tuple[float, str, str | None]] = {n: (0.0, home, None) for n in graph_inputs}
    device_free: dict[str, float] = {}
    finish: dict[str, float] = {}
    cause: dict[str, str | None] = {}
    for s in subgraphs:
        dev = assignment[s.name]
        start, why = device_free.get(dev, 0.0), None
        if dev in device_free:
            why = next((n for n in reversed(list(finish)) if assignment[n] == dev), None)
        for t in s.inputs:
            at, where, producer = ready[t.name]
            arrive = at + (0.0 if where == dev else link.ms(tensor_bytes(t)))
            if arrive > start:
                start, why = arrive, producer
        finish[s.name] = start + cost_ms[(s.name, dev)]
        cause[s.name] = why
        device_free[dev] = finish[s.name]
        for t in s.outputs:
            ready[t.name] = (finish[s.name], dev, s.name)
    end, last = 0.0, None
    for name in graph_outputs:
        at, where, producer = ready[name]
        spec = next(t for s in subgraphs for t in s.outputs if t.name == name)
        arrive = at + (0.0 if where == home else link.ms(tensor_bytes(spec)))
        if arrive >= end:
            end, last = arrive, producer
    chain = []
    while last is not None:
        chain.append(last)
        last = cause[last]
    return Placement(dict(assignment), end, tuple(reversed(chain)))


def plan(manifest: ExportManifest, devices: list[str], cost_ms: dict[tuple[str, str], float],
         link: Link = Link()) -> Placement:
    """The assignment with the lowest predicted latency (ties: fewer devices, then earlier devices)."""
    subs = list(manifest.subgraphs)
    missing = [(s.name, d) for s in subs for d in devices if (s.name, d) not in cost_ms]
    if missing:
        raise UserError(f"placement: no measured cost for {missing[:3]}")
    best: Placement | None = None
    best_key = None
    for combo in itertools.product(devices, repeat=len(subs)):
        p = simulate(subs, dict(zip([s.name for s in subs], combo)), cost_ms, link, devices[0],
                     [manifest.input.name], [manifest.output.name])
        key = (round(p.predicted_ms, 9), len(set(combo)), [devices.index(d) for d in combo])
        if best_key is None or key < best_key:
            best, best_key = p, key
    assert best is not None
    return best


def official(manifest: ExportManifest, devices: list[str]) -> dict[str, str]:
    """The paper's split: stream k on device k (mod count), stem and fusion on the first device."""
    out = {}
    for s in manifest.subgraphs:
        k = s.stream or 0
        out[s.name] = devices[k % len(devices)]
    return out


def from_file(path: Path, manifest: ExportManifest, devices: list[str]) -> dict[str, str]:
    """``--placement FILE``: JSON ``{"stream0": "0", "stream1": "1", ...}`` (device items as in --devices)."""
    try:
        if Path(path).stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
        raw = loads_strict(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"--placement {path}: cannot read JSON: {e}") from e
    names = {s.name for s in manifest.subgraphs}
    if not isinstance(raw, dict) or set(raw) != names:
        raise UserError(f"--placement {path}: expected an object with exactly the subgraphs {sorted(names)}")
    bad = {k: v for k, v in raw.items() if str(v) not in devices}
    if bad:
        raise UserError(f"--placement {path}: devices not in --devices {devices}: {bad}")
    return {k: str(v) for k, v in raw.items()}
