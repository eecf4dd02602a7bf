"""The operator DAG of a static-shape ONNX model, each operator with a FLOP and a byte count.

The partitioner only needs three facts per operator: which tensors it reads and writes
(the edges), how much arithmetic it does and how much memory it touches (its cost). Both
counts come from shapes, so every shape must be known: the model is shape-inferred in
strict mode with data propagation, and a symbolic or unknown dimension is refused.
Initializers, ``Constant`` nodes and nodes computing only from those are data, not work:
they are never scheduled, and every subgraph that reads one gets its own copy when cut.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import onnx
from onnx import helper, shape_inference

from ..errors import ExportError, UserError

CONSTANT_OPS = frozenset({"Constant"})


@dataclass(frozen=True)
class OpNode:
    """One operator: its variable (non-constant) inputs and outputs, FLOPs and bytes touched."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    flops: int
    bytes: int


@dataclass(frozen=True)
class OpGraph:
    """Operators in topological order, and the tensors between them (sizes in bytes)."""

    nodes: tuple[OpNode, ...]
    graph_inputs: tuple[str, ...]
    graph_outputs: tuple[str, ...]
    tensor_bytes: Mapping[str, int]

    @cached_property
    def producer(self) -> dict[str, int]:
        """Tensor name → index of the node writing it (graph inputs have none)."""
        return {t: i for i, n in enumerate(self.nodes) for t in n.outputs}

    @cached_property
    def preds(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(sorted({self.producer[t] for t in n.inputs if t in self.producer})) for n in self.nodes)

    @cached_property
    def succs(self) -> tuple[tuple[int, ...], ...]:
        out: list[set[int]] = [set() for _ in self.nodes]
        for i, ps in enumerate(self.preds):
            for p in ps:
                out[p].add(i)
        return tuple(tuple(sorted(s)) for s in out)


def prepare_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model shape-inferred, with every node named uniquely (``op_type_index`` where a name is
    missing or taken); a symbolic or unknown dimension anywhere is a :class:`UserError`.

    Deterministic, so the partitioner and the cutter, each calling it on the same model, agree
    on the node names a partition lists.
    """
    try:
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # onnx raises InferenceError and friends
        raise ExportError(f"shape inference failed: {str(e).splitlines()[0]}") from e
    seen: set[str] = set()
    for i, node in enumerate(inferred.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
            while node.name in seen:
                node.name += "_"
        seen.add(node.name)
    shapes = _shapes(inferred)
    for node in inferred.graph.node:
        for t in [*node.input, *node.output]:
            if t and t not in shapes:
                raise UserError(f"tensor {t!r} (node {node.name!r}) has no static shape; fix every "
                                "dimension first (e.g. onnx.tools.update_model_dims) and re-run")
    return inferred


def constant_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that compute data, not work: ``Constant`` nodes and every deterministic
    node reading only initializers and their outputs (an exporter's ``Identity`` on a shared
    weight, say). Never scheduled; each piece that reads one gets its own copy."""
    constants = {i.name for i in model.graph.initializer}
    names = set()
    for node in model.graph.node:  # file order is topological
        inputs = [t for t in node.input if t]
        if node.op_type in CONSTANT_OPS or (inputs and not node.op_type.startswith("Random")
                                            and all(t in constants for t in inputs)):
            names.add(node.name)
            constants.update(t for t in node.output if t)
    return names


def build_graph(model: onnx.ModelProto) -> OpGraph:
    """The operator DAG of a model returned by :func:`prepare_model`."""
    shapes = _shapes(model)
    folded = constant_nodes(model)
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.name in folded for o in n.output}
    nodes = []
    for node in model.graph.node:
        if node.name in folded:
            continue
        touched = [t for t in [*node.input, *node.output] if t]
        nodes.append(OpNode(
            name=node.name, op_type=node.op_type,
            inputs=tuple(dict.fromkeys(t for t in node.input if t and t not in constants)),
            outputs=tuple(t for t in node.output if t),
            flops=_flops(node, shapes), bytes=sum(_nbytes(shapes[t]) for t in touched)))
    written = {t for n in nodes for t in n.outputs}
    graph_inputs = tuple(i.name for i in model.graph.input if i.name not in constants)
    for n in nodes:
        missing = [t for t in n.inputs if t not in written and t not in graph_inputs]
        if missing:
            raise ExportError(f"node {n.name!r} reads {missing[0]!r}, which nothing writes")
    graph_outputs = tuple(o.name for o in model.graph.output)
    nodes = _live(_toposorted(nodes), set(graph_outputs))
    tensor_bytes = {t: _nbytes(shapes[t]) for n in nodes for t in (*n.inputs, *n.outputs)}
    return OpGraph(nodes=tuple(nodes), graph_inputs=graph_inputs, graph_outputs=graph_outputs,
                   tensor_bytes=tensor_bytes)


# -- shapes and counts -----------------------------------------------------------------------

Shape = tuple[tuple[int, ...], int]  # dims, bytes per element


def _shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    """Every tensor whose shape is fully static, by name."""
    out: dict[str, Shape] = {}
    for init in model.graph.initializer:
        out[init.name] = (tuple(init.dims), _itemsize(init.data_type))
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = (tuple(a.t.dims), _itemsize(a.t.data_type))
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or not tt.elem_type:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        if all(d >= 0 for d in dims):
            out[vi.name] = (dims, _itemsize(tt.elem_type))
    return out


def _itemsize(elem_type: int) -> int:
    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except (KeyError, TypeError):
        return 4


def _nbytes(shape: Shape) -> int:
    return math.prod(shape[0]) * shape[1]


def _flops(node: onnx.NodeProto, shapes: Mapping[str, Shape]) -> int:
    """Exact multiply-add FLOPs (×2) for Conv, ConvTranspose, Gemm, MatMul; output elements otherwise."""
    out = shapes[node.output[0]][0] if node.output and node.output[0] in shapes else ()
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        w = shapes[node.input[1]][0]  # (Cout, Cin/g, k...)
        return 2 * math.prod(out) * math.prod(w[1:])
    if node.op_type == "ConvTranspose":
        x, w = shapes[node.input[0]][0], shapes[node.input[1]][0]  # w: (Cin, Cout/g, k...)
        return 2 * math.prod(x) * math.prod(w[1:])
    if node.op_type == "Gemm":
        a = shapes[node.input[0]][0]
        k = a[0] if attrs.get("transA", 0) else a[1]
        return 2 * math.prod(out) * k
    if node.op_type == "MatMul":
        k = shapes[node.input[0]][0][-1]
        return 2 * math.prod(out) * k
    return math.prod(out) if out else 1


def _live(nodes: list[OpNode], needed: set[str]) -> list[OpNode]:
    """The nodes some graph output depends on (a cut piece keeps no others), order kept."""
    live = []
    for n in reversed(nodes):
        if needed.intersection(n.outputs):
            live.append(n)
            needed.update(n.inputs)
    return live[::-1]


def _toposorted(nodes: list[OpNode]) -> list[OpNode]:
    """Kahn's order, stable (ties keep file order); a cycle is a broken model."""
    producer = {t: i for i, n in enumerate(nodes) for t in n.outputs}
    consumers: dict[int, set[int]] = {i: set() for i in range(len(nodes))}
    for i, n in enumerate(nodes):
        for t in n.inputs:
            if t in producer:
                consumers[producer[t]].add(i)
    order = kahn_order(range(len(nodes)), consumers)
    if order is None:
        raise ExportError("the model's graph has a cycle")
    return [nodes[i] for i in order]


def kahn_order(items: Iterable[int], succs: Mapping[int, Iterable[int]],
               key: Callable[[int], object] | None = None) -> list[int] | None:
    """A topological order of ``items`` (edges ``succs``), taking the ready item with the smallest ``key``
    (default: the item itself) first; None if the edges form a cycle. The one Kahn's algorithm of the
    package: operators, contracted clusters and subgraph groups all go through it."""
    items = list(items)
    rank = key or (lambda i: i)
    indegree = dict.fromkeys(items, 0)
    for a in items:
        for b in succs.get(a, ()):
            indegree[b] += 1
    ready = [(rank(i), i) for i in items if indegree[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for b in succs.get(i, ()):
            indegree[b] -= 1
            if indegree[b] == 0:
                heapq.heappush(ready, (rank(b), b))
    return order if len(order) == len(items) else None
