"""Exact Q/DQ rewrite for ONNX Runtime on x86: int8 activations -> uint8, zero point + 128.

The int8 export is one symmetric graph (zero points 0, what TensorRT needs). ORT's x86 int8
kernels are u8s8 (uint8 activations, int8 weights); s8s8 takes slower paths (ParNet-S 224, 2 cores,
ORT 1.32: 35.3 ms s8s8 vs 25.7 ms after this rewrite, fp32 64.7; on the old every-op graph s8s8 was
1.4x slower than fp32). For an activation pair
``QuantizeLinear(x, s, z) -> DequantizeLinear(q, s, z)`` with int8 ``q``, the pair with uint8
``q' = q + 128`` and zero point ``z + 128`` represents exactly the same real values:

    q' = clamp(round(x / s) + z + 128, 0, 255) = clamp(round(x / s) + z, -128, 127) + 128 = q + 128
    (q' - (z + 128)) * s = (q - z) * s

so the rewrite changes no output value. Weights (DequantizeLinear of an int8 initializer) stay
int8: that is the "s8" of u8s8. The backend applies this when loading a graph, not the user.

An int8 export's subgraphs also take and give int8 cuts (a graph input read by DequantizeLinear
nodes alone, a graph output a QuantizeLinear makes): those become uint8 too, and the runner converts
at the edge (``u = s + 128``, one XOR of the sign bit: `to_uint8` / `to_int8`).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto

_Q, _DQ = "QuantizeLinear", "DequantizeLinear"


def _zero_point_dtype(q: gs.Node) -> np.dtype | None:
    """Element type of a QuantizeLinear's output; None when its zero point is not a constant."""
    if len(q.inputs) > 2 and q.inputs[2].name:
        zp = q.inputs[2]
        return zp.values.dtype if isinstance(zp, gs.Constant) else None
    dtype = q.attrs.get("output_dtype", 0)
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dtype)) if dtype else np.dtype(np.uint8)  # ONNX's default


def _s8_activation_pairs(graph: gs.Graph) -> list[tuple[gs.Node, list[gs.Node]]]:
    """Activation QuantizeLinear nodes with int8 output whose every reader is a DequantizeLinear."""
    pairs = []
    for q in graph.nodes:
        if q.op != _Q or q.domain not in ("", "ai.onnx", None) or _zero_point_dtype(q) != np.int8:
            continue
        out = q.outputs[0]
        dqs = list(out.outputs)
        if not (dqs or out in graph.outputs) or any(d.op != _DQ or d.inputs[0] is not out for d in dqs):
            continue  # only a Q read by DQs alone (or a graph output: an int8 cut) is an exact rewrite
        if any(len(d.inputs) > 2 and d.inputs[2].name and not isinstance(d.inputs[2], gs.Constant) for d in dqs):
            continue
        pairs.append((q, dqs))
    return pairs


def _s8_graph_inputs(graph: gs.Graph) -> list[tuple[gs.Variable, list[gs.Node]]]:
    """int8 graph inputs (int8 cuts) read by DequantizeLinear nodes with constant int8 zero points alone."""
    found = []
    for tensor in graph.inputs:
        dqs = list(tensor.outputs)
        if tensor.dtype != np.int8 or not dqs or any(d.op != _DQ or d.inputs[0] is not tensor for d in dqs):
            continue
        if all(len(d.inputs) < 3 or not d.inputs[2].name or isinstance(d.inputs[2], gs.Constant) for d in dqs):
            found.append((tensor, dqs))
    return found


def has_s8_activations(model: onnx.ModelProto) -> bool:
    """True when the graph has int8 activations that `to_u8_activations` would rewrite."""
    graph = gs.import_onnx(model)
    return bool(_s8_activation_pairs(graph) or _s8_graph_inputs(graph))


def to_uint8(x: np.ndarray) -> np.ndarray:
    """An int8 cut as the rewritten graph takes it: s + 128 (the sign bit flipped)."""
    return np.bitwise_xor(x.view(np.uint8), np.uint8(0x80))


def to_int8(u: np.ndarray) -> np.ndarray:
    """A rewritten graph's uint8 cut back to the export's int8: u - 128."""
    return np.bitwise_xor(u, np.uint8(0x80)).view(np.int8)


def to_u8_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose int8 activation Q/DQ pairs are uint8 with zero point + 128.

    Weight DequantizeLinear nodes (int8 initializer input) are left as they are; the rewritten Q
    outputs become uint8 tensors. Zero points shared with a weight DQ are not modified: the pairs get
    new uint8 ones. A graph without such pairs comes back unchanged, byte for byte.
    """
    rewritten = u8_rewrite(model)
    if rewritten is None:
        rewritten = onnx.ModelProto()
        rewritten.CopyFrom(model)
    return rewritten


def u8_rewrite(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """`to_u8_activations`, or None when the graph has nothing to rewrite (one reading of the graph)."""
    graph = gs.import_onnx(model)
    pairs = _s8_activation_pairs(graph)
    inputs = _s8_graph_inputs(graph)
    if not pairs and not inputs:
        return None
    taken = set(graph.tensors())
    made: dict[str, gs.Constant] = {}  # int8 zero point name (or "<none:scale>") -> uint8 one

    def u8_zero_point(zp: gs.Tensor | None, scale: gs.Tensor) -> gs.Constant:
        key = zp.name if zp is not None else f"<none:{scale.name}>"
        if key not in made:
            if zp is not None:
                z = zp.values.astype(np.int16)
            else:  # no zero point: 0 of the node's scale shape
                z = np.zeros(scale.values.shape if isinstance(scale, gs.Constant) else (), np.int16)
            base = (zp.name if zp is not None else scale.name) + "_u8"
            name, k = base, 1
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name)
            made[key] = gs.Constant(name, np.asarray(z + 128, dtype=np.uint8))
        return made[key]

    for tensor, dqs in inputs:
        pairs.append((None, dqs))
        tensor.dtype = np.uint8
    for q, dqs in pairs:
        for node in (q, *dqs) if q is not None else dqs:
            zp = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
            new = u8_zero_point(zp, node.inputs[1])
            if len(node.inputs) > 2:
                node.inputs[2] = new
            else:
                node.inputs.append(new)
            node.attrs.pop("output_dtype", None)
        if q is not None:
            q.outputs[0].dtype = np.uint8
    out = gs.export_onnx(graph.cleanup())  # int8 zero points only the rewritten pairs read go
    del out.graph.value_info[:]  # re-derived below, with the rewritten uint8 types
    return _with_value_info(out, model)


def _with_value_info(out: onnx.ModelProto, model: onnx.ModelProto) -> onnx.ModelProto:
    """Keep ``model``'s value_info (shapes ORT's optimizer may use), with the rewritten tensors' types."""
    types = {n.output[0]: TensorProto.UINT8 for n in out.graph.node if n.op_type == _Q}
    produced = {t for n in out.graph.node for t in n.output}
    for vi in model.graph.value_info:
        if vi.name in produced:
            kept = out.graph.value_info.add()
            kept.CopyFrom(vi)
            if vi.name in types and vi.type.HasField("tensor_type"):
                kept.type.tensor_type.elem_type = types[vi.name]
    return out
