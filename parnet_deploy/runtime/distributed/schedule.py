"""The program every rank follows: which tensors cross ranks before each DAG level, in one global
order. Imports no PyTorch."""

from __future__ import annotations

from dataclasses import dataclass

from .plan import RankPlan


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
    graph's outputs made elsewhere travel to rank 0 in a last step. The graph's inputs start on
    rank 0 and are broadcast first where other ranks read them (:attr:`RankPlan.broadcast_inputs`)."""
    export = plan.export
    dag = export.dag
    specs = {s.name: s for s in export.subgraphs}
    producer = {t.name: plan.rank_of[s.name] for s in export.subgraphs for t in s.outputs}
    inputs = {t.name for t in export.whole.inputs}
    have = {r: (set(inputs) if r == 0 else set(plan.broadcast_inputs)) for r in range(plan.world)}
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
    last = tuple(Transfer(t.name, producer[t.name], 0) for t in export.whole.outputs if t.name not in have[0])
    if last:
        steps.append((last, ()))
    return tuple(steps)
