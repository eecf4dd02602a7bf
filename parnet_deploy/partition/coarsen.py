"""Coarsen the operator DAG before scheduling: what can never pay to split becomes one segment.

Two contractions, both exact about concurrency and both acyclic. A fork–join region whose
branches could save at most one launch by running side by side (a squeeze-excite beside a
conv, a residual) becomes one cluster; then chains of clusters become segments. ParNet's
squeeze-excite units and a ResNet's residuals vanish here, so the scheduler (``search``) only
sees the branches worth a stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ToolchainError
from .cost import CostModel
from .graph import OpGraph, kahn_order


@dataclass
class Segments:
    """The operator DAG coarsened twice: cheap fork–join regions contracted, then chains.

    Segments are numbered in topological order, and ``members`` lists each one's operators.
    """

    graph: OpGraph
    cost: CostModel

    def __post_init__(self) -> None:
        g = self.graph
        label = contract_cheap_regions(g, self.cost)
        # the quotient DAG over clusters, in topological order (contraction keeps it acyclic)
        clusters = sorted(set(label))
        cpreds: dict[int, set[int]] = {c: set() for c in clusters}
        for i, ps in enumerate(g.preds):
            cpreds[label[i]].update(label[p] for p in ps if label[p] != label[i])
        csuccs: dict[int, set[int]] = {c: set() for c in clusters}
        for c, ps in cpreds.items():
            for p in ps:
                csuccs[p].add(c)
        corder = _kahn(clusters, csuccs)
        seg_of_cluster: dict[int, int] = {}
        chain_end: list[int] = []
        for c in corder:
            ps = cpreds[c]
            if len(ps) == 1:
                (p,) = ps
                if len(csuccs[p]) == 1 and chain_end[seg_of_cluster[p]] == p:
                    seg_of_cluster[c] = seg_of_cluster[p]
                    chain_end[seg_of_cluster[c]] = c
                    continue
            seg_of_cluster[c] = len(chain_end)
            chain_end.append(c)
        seg_of = [seg_of_cluster[label[i]] for i in range(len(g.nodes))]
        members: list[list[int]] = [[] for _ in chain_end]
        for i, k in enumerate(seg_of):
            members[k].append(i)
        self.seg_of, self.members = seg_of, members
        self.work = [sum(self.cost.node_ms(g.nodes[i]) for i in m) for m in members]
        preds: list[set[int]] = [set() for _ in members]
        crossing: set[tuple[str, int, int]] = set()
        for i, node in enumerate(g.nodes):
            for t in node.inputs:
                p = g.producer.get(t)
                if p is not None and seg_of[p] != seg_of[i]:
                    preds[seg_of[i]].add(seg_of[p])
                    crossing.add((t, seg_of[p], seg_of[i]))
        self.edge_bytes: dict[tuple[int, int], int] = {}
        for t, a, b in crossing:
            self.edge_bytes[a, b] = self.edge_bytes.get((a, b), 0) + g.tensor_bytes[t]
        self.preds = [sorted(p) for p in preds]
        succs: list[list[int]] = [[] for _ in members]
        for b, ps in enumerate(self.preds):
            for a in ps:
                succs[a].append(b)
        self.succs = succs
        # numbered in topological order, so a total order has an edge between every two consecutive ones
        self.is_total_order = all(k - 1 in self.preds[k] for k in range(1, len(members)))

    def comm(self, a: int, b: int) -> float:
        return self.cost.launch_ms + self.cost.transfer_ms(self.edge_bytes[a, b])


def contract_cheap_regions(g: OpGraph, cost: CostModel) -> list[int]:
    """Cluster label per operator: each fork–join region that cannot repay one launch is one cluster.

    Two kinds of region: a fork ``f`` with everything up to its immediate post-dominator ``j``
    (``f`` and ``j`` included), and a join ``j`` with everything back to its immediate
    dominator ``d`` (``d`` excluded: a fork feeding a whole network, say, keeps its other
    branches); either less the operators that also feed something outside it. Splitting a
    region saves at most its total time minus its longest path; when that bound is within one
    ``launch_ms`` (a squeeze-excite beside a conv), the region is contracted, smallest regions
    first, each only if it holds every cluster it touches whole (regions stay nested) and the
    contracted graph stays acyclic. O(V·(V + E)) per region.
    """
    n = len(g.nodes)
    ms = [cost.node_ms(node) for node in g.nodes]
    outputs = set(g.graph_outputs)
    succ = [list(g.succs[i]) + ([n] if not g.succs[i] or outputs & set(g.nodes[i].outputs) else [])
            for i in range(n)]
    pred = [list(g.preds[i]) or [-1] for i in range(n)]
    ipdom = _dominators(range(n - 1, -1, -1), succ, n)
    idom = _dominators(range(n), pred, -1)
    regions: list[set[int]] = []
    for f in range(n):
        if len(succ[f]) > 1 and ipdom[f] != n:
            regions.append(_closed(_between(f, ipdom[f], succ), ipdom[f], succ))
    for j in range(n):
        if len(pred[j]) > 1 and idom[j] != -1:
            regions.append(_closed(_between(j, idom[j], pred) - {idom[j]}, j, succ))
    parent = list(range(n))
    members = {i: {i} for i in range(n)}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for region in sorted((r for r in regions if len(r) > 1), key=len):
        longest: dict[int, float] = {}
        for v in sorted(region):
            longest[v] = ms[v] + max((longest[p] for p in g.preds[v] if p in longest), default=0.0)
        if sum(ms[v] for v in region) - max(longest.values()) > cost.launch_ms:
            continue
        if any(not members[find(v)] <= region for v in region):
            continue  # it would fuse a cluster that reaches outside it: keep the family nested
        saved = parent[:]
        root = find(min(region))
        for v in region:
            parent[find(v)] = root
        if _acyclic([find(i) for i in range(n)], g):
            members[root] = set(region)
        else:
            parent = saved
    return [find(i) for i in range(n)]


def _dominators(order: range, edges: list[list[int]], root: int) -> dict[int, int]:
    """Immediate dominators over ``edges`` (successors for post-dominators, predecessors for
    dominators), visiting ``order`` so that every node's ``edges`` targets come first."""
    dom: dict[int, int] = {root: root}
    depth: dict[int, int] = {root: 0}
    for v in order:
        d = edges[v][0]
        for w in edges[v][1:]:
            while d != w:  # walk the deeper one up the tree until they meet
                if depth[d] >= depth[w]:
                    d = dom[d]
                else:
                    w = dom[w]
        dom[v], depth[v] = d, depth[d] + 1
    return dom


def _between(start: int, stop: int, edges: list[list[int]]) -> set[int]:
    """``start`` and everything reachable from it along ``edges`` without passing ``stop`` (plus ``stop``)."""
    seen, stack = {start}, [start]
    while stack:
        for w in edges[stack.pop()]:
            if w not in seen:
                seen.add(w)
                if w != stop:
                    stack.append(w)
    return seen


def _closed(region: set[int], exit_: int, succ: list[list[int]]) -> set[int]:
    """``region`` less every operator with a consumer outside it (``exit_`` excepted), repeatedly:
    only ``exit_`` may feed the rest of the graph, so a shared operator (one ``ReduceMean`` of a
    tensor two branches read, merged by the exporter) stays out instead of gluing branches."""
    region = set(region)
    changed = True
    while changed:
        leaking = {v for v in region if v != exit_ and any(w not in region for w in succ[v])}
        region -= leaking
        changed = bool(leaking)
    return region if exit_ in region else set()


def _acyclic(label: list[int], g: OpGraph) -> bool:
    succs: dict[int, set[int]] = {c: set() for c in label}
    for i, ps in enumerate(g.preds):
        for p in ps:
            if label[p] != label[i]:
                succs[label[p]].add(label[i])
    try:
        _kahn(sorted(succs), succs)
    except ToolchainError:
        return False
    return True


def _kahn(items: list[int], succs: dict[int, set[int]]) -> list[int]:
    """A topological order, smallest label first among the ready ones."""
    order = kahn_order(items, succs)
    if order is None:
        raise ToolchainError("contracting fork-join regions made a cycle (a bug)")
    return order
