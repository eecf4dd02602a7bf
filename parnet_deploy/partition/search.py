"""Where to cut a multi-branch model, and whether cutting pays: a bounded list-scheduling search.

Steps, for ``K = max(2, devices)`` candidate stream counts ``S = 1..K`` (1 = not split):

1. **Cheap regions.** A fork–join region (a fork up to its immediate post-dominator, or a
   join back to its immediate dominator) whose branches could save at most one launch by
   running side by side (a squeeze-excite beside a conv, a residual) is contracted to one
   cluster: no split inside it can ever pay.
2. **Chains.** Clusters in a chain (one successor, whose only predecessor is this one) are
   contracted into one segment. A graph that contracts to a total order has no concurrency
   worth a launch and is never split.
3. **Streams.** Segments are list-scheduled on ``S`` streams (HEFT: highest upward rank first,
   each on the stream where it finishes earliest; a cross-stream edge costs one launch plus
   the copy). The branches of the remaining forks land on different streams when the overlap
   beats a launch.
4. **Subgraphs.** Each stream's sequence is cut before a segment with an input from another
   stream and after one with an output to another stream. Every edge between subgraphs then
   goes from an earlier start to a later one, so the subgraph DAG is acyclic by construction
   (and checked). Pairs of subgraphs (neighbours on a stream; a producer and its only
   consumer) are then merged greedily while the prediction does not get worse and the DAG
   stays acyclic: fewer launches.
5. **Prediction.** A subgraph costs ``launch_ms`` plus its operators' roofline times plus
   copying in the tensors it reads across cuts (bytes at the memory rate). Stream ``s`` runs
   on device ``s mod devices``; a device runs one subgraph at a time with all its threads, so
   on one device concurrent branches give nothing back and a split (more launches, more
   copies) is never predicted to pay. The candidate with the shortest simulated critical
   path wins; ties go to fewer streams. A subgraph nothing else can run beside (a shared
   prefix, suffix or join) is reported with stream None.

Bound, with ``V`` operators, ``E`` edges, ``N <= V`` segments, ``G <= N`` subgraphs: the
coarsening tries at most ``2V`` regions at ``O(V + E)`` each; per candidate, HEFT is
``O(K·E + N log N)`` and the merging at most ``G`` passes of ``G`` tries at ``O(G + E)`` each (the
merging down to 16 subgraphs, a manifest's limit, at most ``G`` merges of as many tries). In
all ``O(V·(V + E) + K·(K·E + N log N + G²·(G + E)))``: polynomial, no enumeration of partitions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import onnx

from ..errors import ToolchainError, UserError
from .coarsen import Segments
from .cost import CostModel
from .graph import OpGraph, build_graph, kahn_order, prepare_model
from .plan import Partition, Subgraph

MAX_SUBGRAPHS = 16  # what an export manifest holds


def find_partition(model: onnx.ModelProto, cost: CostModel, devices: int = 1,
                   max_subgraphs: int = MAX_SUBGRAPHS) -> Partition:
    """Partition ``model`` (all shapes static) for ``devices`` devices; see the module docstring."""
    if devices < 1:
        raise UserError(f"devices must be >= 1, got {devices}")
    return partition_graph(build_graph(prepare_model(model)), cost, devices, max_subgraphs)


def partition_graph(graph: OpGraph, cost: CostModel, devices: int = 1,
                    max_subgraphs: int = MAX_SUBGRAPHS) -> Partition:
    """:func:`find_partition` on an already-built operator DAG (the search itself). A candidate
    with more than ``max_subgraphs`` subgraphs is merged down to that many, cheapest merge first."""
    if devices < 1:
        raise UserError(f"devices must be >= 1, got {devices}")
    if max_subgraphs < 1:
        raise UserError(f"max_subgraphs must be >= 1, got {max_subgraphs}")
    if not graph.nodes:
        raise UserError("the model has no operators to partition")
    segs = Segments(graph, cost)
    whole = cost.launch_ms + sum(segs.work)
    alone = [_Group(tuple(range(len(segs.members))), 0, 0.0)]
    if segs.is_total_order:
        verdict = (f"not split: the graph is one chain of {len(graph.nodes)} operators (side branches "
                   f"too cheap to repay a launch included), so nothing can run beside anything else")
        return _result(graph, segs, cost, devices, alone, whole, whole, verdict)
    best, best_ms, tried = alone, whole, []
    for s in range(2, max(2, devices) + 1):
        scheduled = _schedule(segs, cost, s)
        groups, ms = _merge(segs, cost, devices, scheduled)
        if len(groups) > max_subgraphs:
            groups, ms = _merge(segs, cost, devices, groups, limit=max_subgraphs)
        if len(groups) == 1 and len(scheduled) <= max_subgraphs:
            # merged back into the whole: report what the split itself predicted
            groups, ms = scheduled, _predict(segs, cost, devices, scheduled)
        tried.append((ms, s, len(groups)))
        if ms < best_ms - 1e-12:
            best, best_ms = groups, ms
    if best is alone:
        ms, s, n = min(tried)
        why = ("on 1 device concurrent branches share the threads, so a split only adds launches and copies"
               if devices == 1 else "launches and cut copies outweigh the overlap")
        shape = f"{n} subgraphs" if n > 1 else f"merged within {max_subgraphs} subgraphs back into one"
        verdict = (f"not split: the best split ({s} streams, {shape}) predicts {ms:.3f} ms "
                   f">= {whole:.3f} ms whole; {why}")
        return _result(graph, segs, cost, devices, alone, whole, whole, verdict)
    result = _result(graph, segs, cost, devices, best, whole, best_ms, "")
    verdict = (f"split into {result.streams} streams, {len(result.subgraphs)} subgraphs: predicted "
               f"{best_ms:.3f} ms vs {whole:.3f} ms whole ({whole / best_ms:.2f}x) on {devices} device(s)")
    return replace(result, verdict=verdict)


@dataclass(frozen=True)
class _Group:
    """A subgraph in the making: segments, the stream that runs it, and when it starts there
    (a stream runs its groups in ``key`` order)."""

    segs: tuple[int, ...]
    stream: int
    key: float


def _schedule(segs: Segments, cost: CostModel, streams: int) -> list[_Group]:
    """HEFT on ``streams`` streams, then each stream's sequence cut at cross-stream edges."""
    n = len(segs.members)
    rank = [0.0] * n
    for k in reversed(range(n)):
        rank[k] = segs.work[k] + max((segs.comm(k, t) + rank[t] for t in segs.succs[k]), default=0.0)
    order = sorted(range(n), key=lambda k: (-rank[k], k))
    stream_of, start, finish = [0] * n, [0.0] * n, [0.0] * n
    free = [0.0] * streams
    for k in order:
        best = None
        for s in range(streams):
            ready = max((finish[p] + (0.0 if stream_of[p] == s else segs.comm(p, k)) for p in segs.preds[k]),
                        default=0.0)
            begin = max(ready, free[s])
            if best is None or begin + segs.work[k] < best[0] - 1e-15:
                best = (begin + segs.work[k], begin, s)
        finish[k], start[k], stream_of[k] = best
        free[best[2]] = best[0]
    groups: list[_Group] = []
    for s in range(streams):
        current: list[int] = []
        for k in sorted((k for k in range(n) if stream_of[k] == s), key=lambda k: (start[k], k)):
            if current and any(stream_of[p] != s for p in segs.preds[k]):
                groups.append(_Group(tuple(current), s, start[current[0]]))
                current = []
            current.append(k)
            if any(stream_of[t] != s for t in segs.succs[k]):
                groups.append(_Group(tuple(current), s, start[current[0]]))
                current = []
        if current:
            groups.append(_Group(tuple(current), s, start[current[0]]))
    return groups


# -- the subgraph DAG: order, simulation, merging ---------------------------------------


def _group_edges(segs: Segments, groups: list[_Group]) -> dict[tuple[int, int], int]:
    """(producer group, consumer group) → bytes crossing that cut."""
    group_of = {k: i for i, g in enumerate(groups) for k in g.segs}
    edges: dict[tuple[int, int], int] = {}
    for (a, b), nbytes in segs.edge_bytes.items():
        ga, gb = group_of[a], group_of[b]
        if ga != gb:
            edges[ga, gb] = edges.get((ga, gb), 0) + nbytes
    return edges


def _order(groups: list[_Group], edges: dict[tuple[int, int], int]) -> list[int] | None:
    """A topological order of the groups that also runs each stream's groups in ``key`` order; None on a cycle."""
    succ: list[set[int]] = [set() for _ in groups]
    for a, b in edges:
        succ[a].add(b)
    sequence = sorted(range(len(groups)), key=lambda i: (groups[i].stream, groups[i].key, min(groups[i].segs)))
    for a, b in zip(sequence, sequence[1:]):
        if groups[a].stream == groups[b].stream:
            succ[a].add(b)
    return kahn_order(range(len(groups)), dict(enumerate(succ)), key=lambda i: min(groups[i].segs))


def _predict(segs: Segments, cost: CostModel, devices: int, groups: list[_Group]) -> float | None:
    """Predicted makespan (None: the groups form a cycle): streams run their groups in sequence, a
    device runs one group at a time, and a group copies its cut inputs in on its own device."""
    edges = _group_edges(segs, groups)
    order = _order(groups, edges)
    if order is None:
        return None
    preds: list[list[tuple[int, int]]] = [[] for _ in groups]
    for (a, b), nbytes in edges.items():
        preds[b].append((a, nbytes))
    finish = [0.0] * len(groups)
    stream_free: dict[int, float] = {}
    device_free: dict[int, float] = {}
    for i in order:
        s, d = groups[i].stream, groups[i].stream % devices
        ready = max((finish[a] for a, _ in preds[i]), default=0.0)
        begin = max(ready, stream_free.get(s, 0.0), device_free.get(d, 0.0))
        copy_in = cost.transfer_ms(sum(nb for _, nb in preds[i]))
        finish[i] = begin + cost.launch_ms + copy_in + sum(segs.work[k] for k in groups[i].segs)
        stream_free[s] = device_free[d] = finish[i]
    return max(finish)


def _merge(segs: Segments, cost: CostModel, devices: int, groups: list[_Group],
           limit: int | None = None) -> tuple[list[_Group], float]:
    """Merge pairs of groups while the DAG stays acyclic and the prediction does not get worse.

    Candidates (:func:`_merge_candidates`): neighbours on a stream, and a producer with its only
    consumer (or a consumer with its only producer). Each pass tries every candidate once
    (skipping groups already merged in it); a pass without a merge ends it, so at most G passes.

    With ``limit``, instead: while there are more than ``limit`` groups, the one merge that
    predicts the least (acyclic, whether or not it gets worse); at most G merges of G tries.
    """
    ms = _predict(segs, cost, devices, groups)
    if ms is None:
        raise ToolchainError("partition search built a cyclic subgraph DAG (a bug)")
    while limit is not None and len(groups) > limit:
        best = None
        for a, b, stream in _merge_candidates(segs, groups):
            trial = [g for i, g in enumerate(groups) if i not in (a, b)]
            trial.append(_Group(groups[a].segs + groups[b].segs, stream, min(groups[a].key, groups[b].key)))
            trial_ms = _predict(segs, cost, devices, trial)
            if trial_ms is not None and (best is None or trial_ms < best[0]):
                best = (trial_ms, trial)
        if best is None:
            raise ToolchainError("no acyclic merge left above the subgraph limit (a bug)")
        ms, groups = best
    merged = limit is None
    while merged:
        merged = False
        candidates = _merge_candidates(segs, groups)
        current = dict(enumerate(groups))
        for a, b, stream in candidates:
            if a not in current or b not in current or current[a] is not groups[a] or current[b] is not groups[b]:
                continue  # one of them was merged in this pass already
            trial = dict(current)
            del trial[b]
            trial[a] = _Group(groups[a].segs + groups[b].segs, stream, min(groups[a].key, groups[b].key))
            trial_ms = _predict(segs, cost, devices, list(trial.values()))
            if trial_ms is not None and trial_ms <= ms + 1e-12:
                current, ms, merged = trial, trial_ms, True
        groups = list(current.values())
    return groups, ms


def _merge_candidates(segs: Segments, groups: list[_Group]) -> list[tuple[int, int, int]]:
    """``(a, b, stream)`` pairs of group indices worth merging, and the stream the merge runs on."""
    edges = _group_edges(segs, groups)
    consumers: dict[int, set[int]] = {}
    producers: dict[int, set[int]] = {}
    for a, b in edges:
        consumers.setdefault(a, set()).add(b)
        producers.setdefault(b, set()).add(a)
    sequence = sorted(range(len(groups)), key=lambda i: (groups[i].stream, groups[i].key, min(groups[i].segs)))
    candidates = [(a, b, groups[a].stream) for a, b in zip(sequence, sequence[1:])
                  if groups[a].stream == groups[b].stream]
    candidates += [(a, b, groups[s].stream) for a, b in edges
                   if consumers[a] == {b} or producers[b] == {a} for s in dict.fromkeys((a, b))]
    return candidates


# -- the result ----------------------------------------------------------------------------


def _result(graph: OpGraph, segs: Segments, cost: CostModel, devices: int, groups: list[_Group],
            whole: float, critical: float, verdict: str) -> Partition:
    edges = _group_edges(segs, groups)
    order = _order(groups, edges)
    if order is None:
        raise ToolchainError("partition search built a cyclic subgraph DAG (a bug)")
    reach = [0] * len(groups)  # bit set of the groups each group reaches (data edges only)
    succ: list[list[int]] = [[] for _ in groups]
    for a, b in edges:
        succ[a].append(b)
    for g in reversed(order):
        for b in succ[g]:
            reach[g] |= reach[b] | (1 << b)
    everyone = (1 << len(groups)) - 1
    shared = [((reach[g] | (1 << g) | sum(1 << h for h in range(len(groups)) if reach[h] >> g & 1)) == everyone)
              for g in range(len(groups))]
    streams = [g.stream for g in groups]
    renumber: dict[int, int] = {}
    for g in order:
        if not shared[g]:
            renumber.setdefault(streams[g], len(renumber))
    work_total = sum(segs.work) or 1.0
    per_stream: dict[int, int] = {}
    for g in order:
        if not shared[g]:
            per_stream[renumber[streams[g]]] = per_stream.get(renumber[streams[g]], 0) + 1
    group_of_node = {i: g for g, group in enumerate(groups) for k in group.segs for i in segs.members[k]}
    readers: dict[str, set[int]] = {}
    for j, n in enumerate(graph.nodes):
        for t in n.inputs:
            readers.setdefault(t, set()).add(group_of_node[j])
    subgraphs, seen = [], {}
    for g in order:
        nodes = sorted(i for k in groups[g].segs for i in segs.members[k])
        names = tuple(graph.nodes[i].name for i in nodes)
        inside = {t for i in nodes for t in graph.nodes[i].outputs}
        inputs = tuple(dict.fromkeys(t for i in nodes for t in graph.nodes[i].inputs if t not in inside))
        outputs = tuple(t for i in nodes for t in graph.nodes[i].outputs
                        if readers.get(t, set()) - {g} or t in graph.graph_outputs)
        work = sum(segs.work[k] for k in groups[g].segs)
        copy_in = cost.transfer_ms(sum(nb for (_, b), nb in edges.items() if b == g))
        if len(groups) == 1:
            name, stream = "whole", None
        elif shared[g]:
            name, stream = f"shared{seen.setdefault('shared', 0)}", None
            seen["shared"] += 1
        else:
            stream = renumber[streams[g]]
            k = seen.get(f"s{stream}", 0)
            seen[f"s{stream}"] = k + 1
            name = f"stream{stream}" if per_stream[stream] == 1 else f"stream{stream}_{k}"
        subgraphs.append(Subgraph(name=name, nodes=names, inputs=inputs, outputs=outputs,
                                  cost_ms=cost.launch_ms + copy_in + work, share=work / work_total, stream=stream))
    return Partition(subgraphs=tuple(subgraphs), graph_inputs=graph.graph_inputs, graph_outputs=graph.graph_outputs,
                     devices=devices, streams=max(1, len(renumber)), whole_ms=whole, critical_path_ms=critical,
                     launch_ms=cost.launch_ms, verdict=verdict)
