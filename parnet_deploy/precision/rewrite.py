"""Graph surgery on the int8 graph (onnx-graphsurgeon): make ONNX Runtime's Q/DQ output follow a placement.

ORT's ``DedicatedQDQPair`` only dedicates pairs among *quantized* consumers: a tensor read by one
quantized node and some float ones gets a single pair that every reader uses (a GlobalAveragePool next
to a Conv reads the fake-quantized tensor). `follow_placement` gives every wanted (node, input) edge a
pair of its own and points every other reader back at the float tensor; constants that ORT quantized as
an elementwise op's input (not a weighted op's weight) go back to their float initializers.
`quantize_boundaries` lets a cut between subgraphs cross as its 8-bit quantization;
`quantize_before_movement` first moves a QuantizeLinear's quantization above the ops that only move
data into it (a stream's output that a Concat and a Reshape carry to the Fusion's quantizer).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import ToolchainError
from .placement import WEIGHTED, Edge

_Q, _DQ = "QuantizeLinear", "DequantizeLinear"
MOVEMENT = ("Concat", "Flatten", "Reshape", "Squeeze", "Transpose", "Unsqueeze")  # values moved, never changed


def fold_gemm_beta(graph: gs.Graph) -> None:
    """ORT's Gemm quantizer resets ``beta`` to 1 even when the bias is left in float: fold it first."""
    for node in graph.nodes:
        beta = node.attrs.get("beta", 1.0)
        if node.op != "Gemm" or beta == 1.0 or len(node.inputs) < 3 or not isinstance(node.inputs[2], gs.Constant):
            continue
        c = node.inputs[2]
        node.inputs[2] = gs.Constant(f"{c.name}_beta", (c.values * np.float32(beta)).astype(c.values.dtype))
        node.attrs["beta"] = 1.0


def name_nodes_uniquely(graph: gs.Graph) -> None:
    """Placement goes by node name: give unnamed and duplicate nodes a name of their own."""
    seen: set[str] = set()
    for k, node in enumerate(graph.nodes):
        if not node.name or node.name in seen:
            node.name = f"{node.op}_{k}_q"
        seen.add(node.name)


def _namer(graph: gs.Graph) -> Callable[[str], str]:
    """``fresh(base)``: ``base``, or ``base_1``, ``base_2``... whichever no node or tensor of ``graph`` has yet."""
    names = {n.name for n in graph.nodes} | set(graph.tensors())
    counter = itertools.count(1)

    def fresh(base: str) -> str:
        name = base
        while name in names:
            name = f"{base}_{next(counter)}"
        names.add(name)
        return name

    return fresh


def _readers(tensor: gs.Tensor) -> list[tuple[gs.Node, int]]:
    """Every (node, input index) that reads ``tensor``, once each (a node may read it twice)."""
    nodes = {id(n): n for n in tensor.outputs}.values()
    return [(n, i) for n in nodes for i, t in enumerate(n.inputs) if t is tensor]


def follow_placement(model: onnx.ModelProto, edges: set[Edge], float_model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's Q/DQ ``model`` with exactly one pair on each of ``edges`` and no other activation pair."""
    graph = gs.import_onnx(model)
    float_constants = {i.name: i for i in float_model.graph.initializer}
    tensors = graph.tensors()
    restored: dict[str, gs.Constant] = {n: t for n, t in tensors.items() if isinstance(t, gs.Constant)}
    fresh = _namer(graph)

    def float_constant(dq: gs.Node) -> gs.Constant:
        """The float initializer ORT quantized into ``dq``'s input (ORT names it ``<name>_quantized``)."""
        name = dq.inputs[0].name.removesuffix("_quantized")
        if name == dq.inputs[0].name or name not in float_constants:
            raise ToolchainError(f"cannot restore the float constant behind {dq.name}")
        if name not in restored:
            restored[name] = gs.Constant(name, onnx.numpy_helper.to_array(float_constants[name]))
        return restored[name]

    for dq in [n for n in graph.nodes if n.op == _DQ]:
        out = dq.outputs[0]
        if isinstance(dq.inputs[0], gs.Constant):  # keep weights of weighted ops, restore other constants
            for node, i in _readers(out):
                if not (node.op in WEIGHTED and i == 1):
                    node.inputs[i] = float_constant(dq)
            continue
        q = dq.inputs[0].inputs[0] if dq.inputs[0].inputs else None
        if q is None or q.op != _Q:
            continue
        wanted = []
        for node, i in _readers(out):
            if (node.name, i) in edges:
                wanted.append((node, i))
            else:
                node.inputs[i] = q.inputs[0]
        for node, i in wanted[1:]:  # one dedicated pair per consuming input
            quantized = gs.Variable(fresh(q.outputs[0].name), dtype=q.outputs[0].dtype, shape=q.outputs[0].shape)
            dequantized = gs.Variable(fresh(out.name), dtype=out.dtype, shape=out.shape)
            graph.nodes.append(gs.Node(_Q, fresh(q.name), dict(q.attrs), list(q.inputs), [quantized]))
            graph.nodes.append(gs.Node(_DQ, fresh(dq.name), dict(dq.attrs), [quantized, *dq.inputs[1:]],
                                       [dequantized]))
            node.inputs[i] = dequantized
    return gs.export_onnx(graph.cleanup().toposort())


def check(model: onnx.ModelProto, symmetric_int8: bool) -> None:
    """What the engines rely on; ORT's options have surprised us before (see the module docstring). Weights
    int8 (no int32 bias DequantizeLinear, which TensorRT cannot parse); activations int8 with zero point 0
    (``symmetric_int8``, TensorRT) or uint8 (the CPU flavors)."""
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        const = inits.get(n.input[0]) if n.op_type == _DQ else None
        if const is not None and const.data_type != onnx.TensorProto.INT8:
            raise ToolchainError(f"{n.name}: a {onnx.TensorProto.DataType.Name(const.data_type)} constant "
                                 "DequantizeLinear (TensorRT's dequantize layer takes 8-bit input only)")
        if n.op_type == _Q:
            zp = inits.get(n.input[2]) if len(n.input) > 2 else None
            if symmetric_int8 and (zp is None or zp.data_type != onnx.TensorProto.INT8
                                   or onnx.numpy_helper.to_array(zp).any()):
                raise ToolchainError(f"{n.name}: activations must be int8 with zero point 0")
            if not symmetric_int8 and (zp is None or zp.data_type != onnx.TensorProto.UINT8):
                raise ToolchainError(f"{n.name}: activations must be uint8")


def _same_quantization(a: gs.Node, b: gs.Node) -> bool:
    """Two QuantizeLinear nodes with equal scale, zero point and attributes (dedicated pairs of one tensor)."""
    if a.attrs != b.attrs or len(a.inputs) != len(b.inputs):
        return False
    for x, y in zip(a.inputs[1:], b.inputs[1:]):
        if x is y:
            continue
        if not (isinstance(x, gs.Constant) and isinstance(y, gs.Constant)):
            return False
        if x.values.dtype != y.values.dtype or not np.array_equal(x.values, y.values):
            return False
    return True


def _zero_point_dtype(q: gs.Node) -> np.dtype:
    """The 8-bit type a QuantizeLinear outputs (its zero point's; uint8 without one, as ONNX says)."""
    zero_point = q.inputs[2] if len(q.inputs) > 2 else None
    return zero_point.values.dtype if isinstance(zero_point, gs.Constant) else np.dtype(np.uint8)


def _moved_from(q: gs.Node, graph_outputs: set[str]) -> list[tuple[gs.Node, int]] | None:
    """The (node, input) edges where data enters the tree of `MOVEMENT` ops that feeds ``q``'s input, or
    None when there is no such tree, ``q`` is per channel (moving data moves channels), the tree's output
    is read by anything but quantizers like ``q`` (``q`` the first of them), a tensor inside it is read
    elsewhere or is a graph output, or a leaf is a constant."""
    node = q.inputs[0].inputs[0] if q.inputs[0].inputs else None
    readers = list(q.inputs[0].outputs)
    if (node is None or node.op not in MOVEMENT or readers[0] is not q or q.inputs[0].name in graph_outputs
            or any(r.op != _Q or not _same_quantization(q, r) for r in readers)
            or not all(isinstance(t, gs.Constant) and t.values.size == 1 for t in q.inputs[1:])):
        return None
    leaves, todo = [], [node]
    while todo:
        node = todo.pop()
        data = node.inputs if node.op == "Concat" else node.inputs[:1]  # Reshape's shape, Unsqueeze's axes...
        for i, t in enumerate(data):
            src = t.inputs[0] if t.inputs else None
            if isinstance(t, gs.Constant):
                return None
            if src is not None and src.op in MOVEMENT:
                if len(t.outputs) != 1 or len(src.outputs) != 1 or t.name in graph_outputs:
                    return None
                todo.append(src)
            else:
                leaves.append((node, i))
    return leaves


def quantize_before_movement(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every tensor that only `MOVEMENT` ops carry into a QuantizeLinear that quantizer's pair.

    ``y -> Unsqueeze -> Concat -> Reshape -> Q`` becomes ``y -> Q -> DQ -> Unsqueeze -> ...`` with
    Q's scale and zero point, on every input of the Concat. The values are the same: moving data
    commutes with an elementwise quantization of one scale, and Q(DQ(q)) = q. OpenVINO then moves
    8-bit data, and a stream's output read this way can cross its cut quantized (`quantize_boundaries`).
    """
    graph = gs.import_onnx(model)
    fresh = _namer(graph)
    for q in [n for n in graph.nodes if n.op == _Q]:
        for node, i in _moved_from(q, {t.name for t in graph.outputs}) or []:
            x = node.inputs[i]
            quantized = gs.Variable(fresh(f"{x.name}_QuantizeLinear_Output"), dtype=_zero_point_dtype(q),
                                    shape=x.shape)
            dequantized = gs.Variable(fresh(f"{x.name}_DequantizeLinear_Output"), dtype=q.inputs[1].dtype,
                                      shape=x.shape)
            graph.nodes.append(gs.Node(_Q, fresh(f"{x.name}_QuantizeLinear"), dict(q.attrs), [x, *q.inputs[1:]],
                                       [quantized]))
            graph.nodes.append(gs.Node(_DQ, fresh(f"{x.name}_DequantizeLinear"),
                                       {k: v for k, v in q.attrs.items() if k == "axis"},
                                       [quantized, *q.inputs[1:]], [dequantized]))
            node.inputs[i] = dequantized
    return gs.export_onnx(graph.cleanup().toposort())


def quantize_boundaries(model: onnx.ModelProto, names: list[str]) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Let the named tensors (the cuts between subgraphs) cross quantized where every reader quantizes them.

    Such a tensor's readers are QuantizeLinear nodes with one scale (the dedicated pairs of one
    calibrated tensor). They become one QuantizeLinear whose 8-bit output takes the tensor's name, read
    by every DequantizeLinear; the float tensor is renamed. The values are the same; a cut there keeps
    the producer's Conv -> Relu -> Quantize fused (8-bit out) and the consumer's Dequantize -> Conv, and
    moves a quarter of the bytes. Returns the model and the cuts that are 8-bit now, with their dtypes.
    """
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    fresh = _namer(graph)
    crossed: dict[str, str] = {}
    for name in names:
        tensor = tensors.get(name)
        if tensor is None or tensor in graph.inputs or tensor in graph.outputs:
            continue
        readers = list(tensor.outputs)
        if not readers or any(r.op != _Q for r in readers) or not all(_same_quantization(readers[0], r)
                                                                        for r in readers[1:]):
            continue
        quantized = readers[0].outputs[0]
        for q in readers[1:]:
            for dq in list(q.outputs[0].outputs):
                dq.inputs[[i for i, t in enumerate(dq.inputs) if t is q.outputs[0]][0]] = quantized
        dtype = _zero_point_dtype(readers[0])
        tensor.name, quantized.name = fresh(f"{name}_float"), name
        quantized.dtype, quantized.shape = dtype, tensor.shape
        crossed[name] = dtype.name
    return gs.export_onnx(graph.cleanup().toposort()), crossed
