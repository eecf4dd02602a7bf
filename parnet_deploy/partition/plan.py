"""The result of a partition search: subgraphs, their DAG (read off tensor names), the prediction.

A subgraph's output and the input it feeds carry the same tensor name, so the DAG is never
stored twice: :meth:`Partition.edges` derives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Subgraph:
    """One piece of the model: the operators it runs and the tensors it reads and writes.

    ``stream`` is None for a shared part (prefix, suffix, a join): one that nothing else can
    run beside, so it belongs to no stream.
    """

    name: str
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    cost_ms: float  # predicted: one launch, copying in its cut inputs, its operators
    share: float  # its operators' fraction of the whole model's operator time
    stream: int | None


@dataclass(frozen=True)
class Partition:
    """Subgraphs in a valid execution order, with the prediction that chose them."""

    subgraphs: tuple[Subgraph, ...]
    graph_inputs: tuple[str, ...]
    graph_outputs: tuple[str, ...]
    devices: int
    streams: int  # distinct streams used; 1 = not split
    whole_ms: float  # predicted time of the unsplit model (one launch)
    critical_path_ms: float  # predicted time of this partition on ``devices`` devices
    launch_ms: float
    verdict: str

    @property
    def predicted_speedup(self) -> float:
        return self.whole_ms / self.critical_path_ms

    @property
    def is_split(self) -> bool:
        return len(self.subgraphs) > 1

    def __getitem__(self, name: str) -> Subgraph:
        for s in self.subgraphs:
            if s.name == name:
                return s
        raise KeyError(name)

    @cached_property
    def edges(self) -> tuple[tuple[str, str, str], ...]:
        """``(producer, consumer, tensor)`` for every tensor that crosses a cut."""
        producer = {t: s.name for s in self.subgraphs for t in s.outputs}
        return tuple((producer[t], s.name, t) for s in self.subgraphs for t in s.inputs if t in producer)

    @cached_property
    def _reach(self) -> dict[str, frozenset[str]]:
        """Subgraph name → the subgraphs that depend on it, directly or not."""
        succ: dict[str, set[str]] = {s.name: set() for s in self.subgraphs}
        for a, b, _ in self.edges:
            succ[a].add(b)
        reach: dict[str, frozenset[str]] = {}
        for s in reversed(self.subgraphs):  # execution order: successors come later
            reach[s.name] = frozenset(succ[s.name]).union(*(reach[t] for t in succ[s.name]))
        return reach

    def depends(self, later: str, earlier: str) -> bool:
        """Whether ``later`` needs ``earlier``'s outputs, directly or through other subgraphs."""
        return later in self._reach[earlier]

    def concurrent(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` may run at the same time (neither depends on the other)."""
        return a != b and not self.depends(a, b) and not self.depends(b, a)
