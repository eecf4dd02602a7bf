"""The DAG of an export's subgraphs, read off tensor names: the one place it is derived.

An output of one subgraph and the input it feeds carry the same name. Executors, the
placement planner, the distributed plan and the benchmark all ask this object.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from ..errors import ExportError

if TYPE_CHECKING:
    from .export_manifest import SubgraphSpec

INPUT = "input"  # the producer of the graph's own inputs


@dataclass(frozen=True)
class Edge:
    tensor: str
    producer: str  # a subgraph name, or "input"
    consumers: tuple[str, ...]


@dataclass(frozen=True)
class Dag:
    """Subgraphs in a valid execution order, and who feeds whom."""

    subgraphs: tuple[SubgraphSpec, ...]
    graph_inputs: tuple[str, ...]
    graph_outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.subgraphs]
        if not names:
            raise ExportError("the DAG has no subgraphs")
        if len(set(names)) != len(names):
            raise ExportError(f"subgraph names repeat: {names}")
        produced: dict[str, str] = {}
        for s in self.subgraphs:
            for t in s.outputs:
                if t.name in produced or t.name in self.graph_inputs:
                    raise ExportError(f"tensor {t.name!r} is produced twice")
                produced[t.name] = s.name
        available = set(self.graph_inputs)
        for s in self.subgraphs:  # listed order must be an execution order: this also rules out cycles
            missing = [t.name for t in s.inputs if t.name not in available]
            if missing:
                raise ExportError(f"subgraph {s.name!r} needs {missing}, which no earlier subgraph produces "
                                  f"(a cycle, or an unknown tensor)")
            available |= {t.name for t in s.outputs}
        lost = [n for n in self.graph_outputs if n not in produced]
        if lost:
            raise ExportError(f"graph outputs {lost} are produced by no subgraph")
        used = {t.name for s in self.subgraphs for t in s.inputs} | set(self.graph_outputs)
        dead = [s.name for s in self.subgraphs if not any(t.name in used for t in s.outputs)]
        if dead:
            raise ExportError(f"subgraphs {dead} feed nothing (the DAG is not connected)")

    @cached_property
    def _producer(self) -> dict[str, str]:
        return {t.name: s.name for s in self.subgraphs for t in s.outputs}

    @cached_property
    def _spec(self) -> dict[str, SubgraphSpec]:
        return {s.name: s for s in self.subgraphs}

    def spec(self, name: str) -> SubgraphSpec:
        return self._spec[name]

    def producer(self, tensor: str) -> str:
        """The subgraph that outputs ``tensor``, or ``"input"`` for the graph's inputs."""
        return self._producer.get(tensor, INPUT)

    def consumers(self, tensor: str) -> tuple[str, ...]:
        return tuple(s.name for s in self.subgraphs if any(t.name == tensor for t in s.inputs))

    def predecessors(self, subgraph: str) -> tuple[str, ...]:
        """Subgraphs whose outputs ``subgraph`` reads (in execution order, no repeats)."""
        names = [self.producer(t.name) for t in self._spec[subgraph].inputs]
        return tuple(dict.fromkeys(n for n in names if n != INPUT))

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Subgraphs grouped by depth: every member of a level can run at the same time."""
        depth: dict[str, int] = {}
        for s in self.subgraphs:
            depth[s.name] = 1 + max((depth[p] for p in self.predecessors(s.name)), default=-1)
        return tuple(tuple(n for n in depth if depth[n] == d) for d in range(max(depth.values()) + 1))

    @property
    def width(self) -> int:
        """How many subgraphs can ever run at once."""
        return max(len(level) for level in self.levels())

    @property
    def edges(self) -> tuple[Edge, ...]:
        tensors = dict.fromkeys(t.name for s in self.subgraphs for t in s.inputs)
        return tuple(Edge(t, self.producer(t), self.consumers(t)) for t in tensors)

    def to_list(self) -> list[dict]:
        return [{"tensor": e.tensor, "producer": e.producer, "consumers": list(e.consumers)} for e in self.edges]
