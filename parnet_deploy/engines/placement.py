"""Placement of subgraphs on devices: minimise the predicted critical path.

The prediction is a list schedule of the DAG: each device runs its subgraphs one at a time
in execution order; a subgraph starts when its device is free and its inputs have arrived;
an input produced on another device arrives after ``bytes / bandwidth + latency``. The image
starts on the first device and the logits must end there.

Search: with at most `EXHAUSTIVE_LIMIT` assignments (3 devices, 5 subgraphs: 243) every one is
tried, which is exact. The manifest allows 16 subgraphs and there may be 4 GPUs: 4**16 ≈ 4.3e9
simulations, over a day at ~30 µs each, so above the limit `plan` uses a list-scheduling heuristic
(earliest finish time, HEFT's device rule) and a bounded local search that moves one or two
subgraphs at a time, both scored by the same `simulate` (see `simulation_bound`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts.build_records import Placement
from ..artifacts.export_manifest import ExportManifest, SubgraphSpec, TensorSpec
from ..artifacts.files import MAX_MANIFEST_BYTES, loads_strict
from ..errors import UserError

# Up to this many assignments (devices ** subgraphs) `search` tries them all: exact, and at tens of
# µs a simulation 4096 of them take a fraction of a second. Above it: `heuristic`.
EXHAUSTIVE_LIMIT = 4096
# Cap on the local search's passes (one accepted move each) from each start; a pass that improves
# nothing ends it earlier. On random 16-subgraph, 4-device DAGs 16 passes reached what 64 did, while
# 8 stopped up to 4% short.
LOCAL_SEARCH_PASSES = 16


@dataclass(frozen=True)
class Link:
    """Cost of moving a tensor between two devices (defaults: PCIe 4.0 x16, measured-ish)."""

    gbytes_per_s: float = 20.0
    latency_ms: float = 0.01

    def ms(self, nbytes: int) -> float:
        return self.latency_ms + nbytes / (self.gbytes_per_s * 1e9) * 1e3


@functools.lru_cache(maxsize=4096)
def tensor_bytes(t: TensorSpec) -> int:
    """Size of ``t``; cached because the search asks for each tensor once per simulation, thousands of times."""
    return math.prod(t.shape) * np.dtype(t.dtype).itemsize


Ready = dict[str, tuple[float, str, str | None]]  # tensor -> (time it exists, device, producing subgraph)


def _start(s: SubgraphSpec, dev: str, ready: Ready, device_free: dict[str, float],
           link: Link) -> tuple[float, str | None, bool]:
    """When ``s`` can start on ``dev``: (time, producer of the input that arrives last, whether that
    input rather than the device's queue sets the time). The one copy of the timing rule, shared by
    `simulate` and the EFT schedule so the heuristic builds what the simulation scores."""
    start, why, by_input = device_free.get(dev, 0.0), None, False
    for t in s.inputs:
        at, where, producer = ready[t.name]
        arrive = at + (0.0 if where == dev else link.ms(tensor_bytes(t)))
        if arrive > start:
            start, why, by_input = arrive, producer, True
    return start, why, by_input


def simulate(subgraphs: list[SubgraphSpec], assignment: dict[str, str], cost_ms: dict[tuple[str, str], float],
             link: Link, home: str, graph_inputs: list[str], graph_outputs: list[str]) -> Placement:
    """Predicted latency of one assignment, and the chain that determines it."""
    ready: Ready = {n: (0.0, home, None) for n in graph_inputs}
    device_free: dict[str, float] = {}
    last_on: dict[str, str] = {}
    finish: dict[str, float] = {}
    cause: dict[str, str | None] = {}
    for s in subgraphs:
        dev = assignment[s.name]
        start, why, by_input = _start(s, dev, ready, device_free, link)
        finish[s.name] = start + cost_ms[(s.name, dev)]
        cause[s.name] = why if by_input else last_on.get(dev)
        device_free[dev] = finish[s.name]
        last_on[dev] = s.name
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


@dataclass(frozen=True)
class Problem:
    """One placement problem: what `simulate` needs besides the assignment."""

    subgraphs: tuple[SubgraphSpec, ...]
    devices: tuple[str, ...]
    cost_ms: dict[tuple[str, str], float]
    link: Link
    graph_inputs: tuple[str, ...]
    graph_outputs: tuple[str, ...]

    @property
    def home(self) -> str:
        return self.devices[0]

    def score(self, combo: tuple[str, ...]) -> tuple[tuple, Placement]:
        """(sort key, placement) of one assignment, a device per subgraph in execution order. The key
        orders by predicted latency (rounded so float noise does not decide), then fewer devices, then
        earlier devices: of equally fast placements, the one needing least hardware and the most
        predictable one."""
        p = simulate(list(self.subgraphs), {s.name: d for s, d in zip(self.subgraphs, combo)}, self.cost_ms,
                     self.link, self.home, list(self.graph_inputs), list(self.graph_outputs))
        return (round(p.predicted_ms, 9), len(set(combo)), [self.devices.index(d) for d in combo]), p


def exhaustive(problem: Problem) -> Placement:
    """Every assignment: devices ** subgraphs simulations, the exact optimum under the key of `Problem.score`."""
    best: tuple[tuple, Placement] | None = None
    for combo in itertools.product(problem.devices, repeat=len(problem.subgraphs)):
        scored = problem.score(combo)
        if best is None or scored[0] < best[0]:
            best = scored
    assert best is not None
    return best[1]


def _eft(problem: Problem) -> tuple[str, ...]:
    """List schedule: in execution order, each subgraph goes to the device where it would finish
    earliest given the ones already placed (HEFT's device rule). HEFT also orders subgraphs by upward
    rank, but here each device runs its subgraphs in manifest order (the runtime does), so the order
    is fixed and the rank only orders the local search. A subgraph that produces a graph output pays,
    off the home device, for sending it home. No simulations: S × D evaluations of `_start`."""
    home = problem.home
    out_bytes = {t.name: tensor_bytes(t) for s in problem.subgraphs for t in s.outputs}
    ready: Ready = {n: (0.0, home, None) for n in problem.graph_inputs}
    device_free: dict[str, float] = {}
    combo = []
    for s in problem.subgraphs:
        best_dev, best_t = home, float("inf")
        for dev in problem.devices:  # strict <: ties go to the earlier device
            t = _start(s, dev, ready, device_free, problem.link)[0] + problem.cost_ms[(s.name, dev)]
            if dev != home:
                t += max((problem.link.ms(out_bytes[o.name]) for o in s.outputs if o.name in problem.graph_outputs),
                         default=0.0)
            if t < best_t:
                best_dev, best_t = dev, t
        finish = _start(s, best_dev, ready, device_free, problem.link)[0] + problem.cost_ms[(s.name, best_dev)]
        device_free[best_dev] = finish
        for o in s.outputs:
            ready[o.name] = (finish, best_dev, s.name)
        combo.append(best_dev)
    return tuple(combo)


def _upward_rank_order(problem: Problem) -> list[int]:
    """Subgraph indices by upward rank, highest first: mean cost over devices plus the longest path
    to the end, an edge counted at its mean link cost (a fraction (D-1)/D of transfers cross devices).
    Local search visits the subgraphs that bound the critical path first."""
    n_dev = len(problem.devices)
    cross = (n_dev - 1) / n_dev
    consumers: dict[str, list[int]] = {}
    for i, s in enumerate(problem.subgraphs):
        for t in s.inputs:
            consumers.setdefault(t.name, []).append(i)
    rank = [0.0] * len(problem.subgraphs)
    for i in reversed(range(len(problem.subgraphs))):
        s = problem.subgraphs[i]
        tail = 0.0
        for t in s.outputs:
            move = cross * problem.link.ms(tensor_bytes(t))
            if t.name in problem.graph_outputs:
                tail = max(tail, move)
            for j in consumers.get(t.name, []):
                tail = max(tail, move + rank[j])
        rank[i] = sum(problem.cost_ms[(s.name, d)] for d in problem.devices) / n_dev + tail
    return sorted(range(len(rank)), key=lambda i: (-rank[i], i))


def _edges(problem: Problem) -> list[tuple[int, int]]:
    """(producer, consumer) index pairs of the DAG, each once."""
    made = {t.name: i for i, s in enumerate(problem.subgraphs) for t in s.outputs}
    return list(dict.fromkeys((made[t.name], j) for j, s in enumerate(problem.subgraphs)
                              for t in s.inputs if t.name in made))


Move = tuple[tuple[int, str], ...]  # (subgraph index, new device) for each subgraph it changes


def _neighbours(devices: tuple[str, ...], current: list[str], order: list[int],
                edges: list[tuple[int, int]]) -> Iterator[Move]:
    """The local search's moves from ``current``: one subgraph to another device (S × (D-1)); two
    subgraphs on different devices swapping them (≤ S(S-1)/2), which single moves cannot do without
    passing through a worse, doubly loaded device; a producer and its consumer moving together to a
    third device (≤ E × (D-1)), since moving either alone pays the link twice."""
    for i in order:
        yield from (((i, d),) for d in devices if d != current[i])
    for x, i in enumerate(order):
        yield from (((i, current[j]), (j, current[i])) for j in order[x + 1:] if current[i] != current[j])
    for i, j in edges:
        yield from (((i, d), (j, d)) for d in devices if d != current[i] and d != current[j])


def _local_search(problem: Problem, start: tuple[tuple, Placement], combo: tuple[str, ...],
                  order: list[int], edges: list[tuple[int, int]]) -> tuple[tuple, Placement]:
    """Steepest descent over `_neighbours`: each pass scores every move and takes the best, if it
    improves; a pass that improves nothing, or `LOCAL_SEARCH_PASSES` passes, ends it. Taking each
    improving move as soon as it was found was greedier: on the same 1200 random DAGs as `heuristic`'s
    figures, optimal on ~98.7% and up to 1.20× the optimum, as an early move blocked a better one.
    Ties among moves go to the first in `_neighbours`' order: subgraphs of high upward rank first."""
    best, current = start, list(combo)
    for _ in range(LOCAL_SEARCH_PASSES):
        chosen = None
        for move in _neighbours(problem.devices, current, order, edges):
            trial = list(current)
            for i, dev in move:
                trial[i] = dev
            scored = problem.score(tuple(trial))
            if scored[0] < best[0]:
                best, chosen = scored, trial
        if chosen is None:
            break
        current = chosen
    return best


def simulation_bound(n_subgraphs: int, n_devices: int, n_edges: int) -> int:
    """Most simulations `heuristic` runs: D + 1 starts, then from each at most `LOCAL_SEARCH_PASSES`
    sweeps of S(D-1) + S(S-1)/2 + E(D-1) moves: O(passes × D × S × (S + D)), as E ≤ 8S (a subgraph
    has at most 8 inputs). 16 subgraphs, 4 devices, 120 edges: 42,245 (about 10,000 in practice, well
    under a second), against 4**16 ≈ 4.3e9."""
    s, d = n_subgraphs, n_devices
    sweep = s * (d - 1) + s * (s - 1) // 2 + n_edges * (d - 1)
    return (d + 1) * (1 + LOCAL_SEARCH_PASSES * sweep)


def heuristic(problem: Problem) -> Placement:
    """List scheduling, then local search; at most `simulation_bound` simulations. On 1200 random DAGs
    of 3-7 subgraphs on 2-3 devices it found the exhaustive optimum on 99.6% and was at most 1.045×
    it (tests/test_placement.py asserts a looser bound).

    Starts: the EFT list schedule and everything on each one device. The all-on-``devices[0]``
    assignment is among them and the search only ever accepts improvements, so the result is never
    predicted slower than not distributing at all. Local search runs from every start: EFT is greedy
    and cannot foresee a later queue, and from all-on-one-device a slow link can make every move look
    worse, so the starts cover each other's blind spots (from the best two only: optimal on ~98%;
    from all-on-``devices[0]`` only: ~93%, up to 1.26× the optimum)."""
    starts: dict[tuple[str, ...], tuple[tuple, Placement]] = {}
    for combo in [tuple([d] * len(problem.subgraphs)) for d in problem.devices] + [_eft(problem)]:
        if combo not in starts:
            starts[combo] = problem.score(combo)
    order, edges = _upward_rank_order(problem), _edges(problem)
    return min((_local_search(problem, scored, combo, order, edges) for combo, scored in starts.items()),
               key=lambda b: b[0])[1]


def search(subgraphs: list[SubgraphSpec], devices: list[str], cost_ms: dict[tuple[str, str], float], link: Link,
           graph_inputs: list[str], graph_outputs: list[str]) -> Placement:
    """`exhaustive` up to `EXHAUSTIVE_LIMIT` assignments, `heuristic` above (``devices[0]`` is home)."""
    problem = Problem(tuple(subgraphs), tuple(devices), cost_ms, link, tuple(graph_inputs), tuple(graph_outputs))
    if len(devices) ** len(subgraphs) <= EXHAUSTIVE_LIMIT:
        return exhaustive(problem)
    return heuristic(problem)


def plan(manifest: ExportManifest, devices: list[str], cost_ms: dict[tuple[str, str], float],
         link: Link = Link()) -> Placement:
    """The assignment with the lowest predicted latency (ties: fewer devices, then earlier devices):
    exact up to `EXHAUSTIVE_LIMIT` assignments, the best `heuristic` finds above."""
    subs = list(manifest.subgraphs)
    if not devices or len(set(devices)) != len(devices):
        raise UserError(f"placement: expected distinct devices, got {devices}")
    missing = [(s.name, d) for s in subs for d in devices if (s.name, d) not in cost_ms]
    if missing:
        raise UserError(f"placement: no measured cost for {missing[:3]}")
    return search(subs, devices, cost_ms, link, [manifest.input.name], [manifest.output.name])


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
