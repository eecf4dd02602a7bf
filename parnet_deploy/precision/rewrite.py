"""Graph surgery on the int8 graph (onnx-graphsurgeon): make ONNX Runtime's Q/DQ output follow a placement.

ORT's ``DedicatedQDQPair`` only dedicates pairs among *quantized* consumers: a tensor read by one
quantized node and some float ones gets a single pair that every reader uses (a GlobalAveragePool next
to a Conv reads the fake-quantized tensor). `follow_placement` gives every wanted (node, input) edge a
pair of its own and points every other reader back at the float tensor; constants that ORT quantized as
an elementwise op's input (not a weighted op's weight) go back to their float initializers.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import ToolchainError
from .placement import WEIGHTED, Edge

_Q, _DQ = "QuantizeLinear", "DequantizeLinear"


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
    names = {n.name for n in graph.nodes} | set(tensors)
    counter = itertools.count(1)

    def fresh(base: str) -> str:
        name = base
        while name in names:
            name = f"{base}_{next(counter)}"
        names.add(name)
        return name

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


def check(model: onnx.ModelProto) -> None:
    """What every runtime relies on; ORT's options have surprised us before (see the module docstring)."""
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        const = inits.get(n.input[0]) if n.op_type == _DQ else None
        if const is not None and const.data_type != onnx.TensorProto.INT8:
            raise ToolchainError(f"{n.name}: a {onnx.TensorProto.DataType.Name(const.data_type)} constant "
                                 "DequantizeLinear (TensorRT's dequantize layer takes 8-bit input only)")
        if n.op_type == _Q:
            zp = inits.get(n.input[2]) if len(n.input) > 2 else None
            if zp is None or zp.data_type != onnx.TensorProto.INT8 or onnx.numpy_helper.to_array(zp).any():
                raise ToolchainError(f"{n.name}: activations must be int8 with zero point 0")
