"""What ``parnet-build`` records beside its engines, typed: the ``--backend auto`` trials, the
accuracy gate of a reduced precision and the placement it predicted. Each record reads back
through :class:`Fields` (``parse(to_dict(r)) == r``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .schema import Fields, check_name

MAX_ENTRIES = 4096  # placement costs: subgraphs x devices


@dataclass(frozen=True)
class Trial:
    """One candidate of ``--backend auto``: its median latency on the whole graph."""

    backend: str
    precision: str
    median_ms: float
    chosen: bool

    @classmethod
    def parse(cls, f: Fields) -> Trial:
        return cls(check_name(f.str("backend"), f"{f.where}.backend"), f.str("precision"), f.number("median_ms"),
                   f.flag("chosen"))


@dataclass(frozen=True)
class AccuracyGate:
    """Top-1 of a reduced-precision engine against fp32 on one evaluation set."""

    data: str
    images: int
    top1_fp32: float | None
    top1: float | None
    agreement: float | None
    drop_points: float
    max_drop: float
    reference: str  # what fp32 ran on

    @classmethod
    def parse(cls, f: Fields) -> AccuracyGate:
        return cls(f.str("data"), f.int("images", 0, 1 << 31), f.number("top1_fp32", True), f.number("top1", True),
                   f.number("agreement", True), f.number("drop_points"), f.number("max_drop"), f.str("reference"))


@dataclass(frozen=True)
class Placement:
    """Subgraph → device, with the critical path it predicts; ``costs_ms`` (``subgraph@device`` →
    measured ms) when the build measured them."""

    assignment: dict[str, str]
    predicted_ms: float
    critical_path: tuple[str, ...]
    costs_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, f: Fields) -> Placement:
        assignment = f.obj("assignment")
        costs = f.obj("costs_ms", {})
        if len(assignment.d) > MAX_ENTRIES or len(costs.d) > MAX_ENTRIES:
            raise f.error("", f"more than {MAX_ENTRIES} entries")
        return cls({k: assignment.str(k) for k in assignment.d}, f.number("predicted_ms"),
                   f.strings("critical_path", MAX_ENTRIES), {k: costs.number(k) for k in costs.d})
