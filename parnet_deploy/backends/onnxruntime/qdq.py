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
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

_Q, _DQ = "QuantizeLinear", "DequantizeLinear"


def _zero_point_type(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> int | None:
    """Element type of a QuantizeLinear's output; None when a zero point is not a constant."""
    if len(node.input) > 2 and node.input[2]:
        zp = inits.get(node.input[2])
        return None if zp is None else zp.data_type
    attr = next((a for a in node.attribute if a.name == "output_dtype"), None)
    return attr.i if attr is not None and attr.i else TensorProto.UINT8  # ONNX's default: uint8


def _s8_activation_pairs(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, list[onnx.NodeProto]]]:
    """Activation QuantizeLinear nodes with int8 output whose every reader is a DequantizeLinear."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    outputs = {o.name for o in graph.output}
    pairs = []
    for q in graph.node:
        if q.op_type != _Q or q.domain not in ("", "ai.onnx") or _zero_point_type(q, inits) != TensorProto.INT8:
            continue
        dqs = readers.get(q.output[0], [])
        if q.output[0] in outputs or not dqs or any(d.op_type != _DQ or d.input[0] != q.output[0] for d in dqs):
            continue  # only a Q read by DQs alone is an exact rewrite
        if any(len(d.input) > 2 and d.input[2] and d.input[2] not in inits for d in dqs):
            continue
        pairs.append((q, dqs))
    return pairs


def has_s8_activations(model: onnx.ModelProto) -> bool:
    """True when the graph has int8 activation Q/DQ pairs that `to_u8_activations` would rewrite."""
    return bool(_s8_activation_pairs(model))


def to_u8_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose int8 activation Q/DQ pairs are uint8 with zero point + 128.

    Weight DequantizeLinear nodes (int8 initializer input) are left as they are; value_info and
    graph outputs of the rewritten Q outputs become uint8. Zero-point initializers are not modified
    in place (a weight DQ may share one): the pairs get new uint8 ones.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    taken = set(inits) | {t for n in graph.node for t in (*n.input, *n.output)} | {i.name for i in graph.input}
    made: dict[str, str] = {}  # int8 zero point (or "" for a missing one, by shape) -> uint8 one
    rewritten: set[str] = set()

    def u8_zero_point(name: str, template: str) -> str:
        key = name or f"<none:{template}>"
        if key not in made:
            if name:
                z = numpy_helper.to_array(inits[name]).astype(np.int16)
            else:  # no zero point: 0 of the node's scale shape
                z = np.zeros(numpy_helper.to_array(inits[template]).shape, np.int16) if template in inits \
                    else np.zeros((), np.int16)
            base = (name or template) + "_u8"
            new, k = base, 1
            while new in taken:
                new, k = f"{base}_{k}", k + 1
            taken.add(new)
            graph.initializer.append(numpy_helper.from_array((z + 128).astype(np.uint8), new))
            made[key] = new
        return made[key]

    for q, dqs in _s8_activation_pairs(out):
        for node in (q, *dqs):
            zp = node.input[2] if len(node.input) > 2 else ""
            new = u8_zero_point(zp, node.input[1])
            if len(node.input) > 2:
                node.input[2] = new
            else:
                node.input.append(new)
            kept = [a for a in node.attribute if a.name != "output_dtype"]
            node.ClearField("attribute")
            node.attribute.extend(kept)
        rewritten.add(q.output[0])

    for vi in (*graph.value_info, *graph.output):
        if vi.name in rewritten and vi.type.HasField("tensor_type"):
            vi.type.tensor_type.elem_type = TensorProto.UINT8
    read = {t for n in graph.node for t in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name in made and i.name not in read]:
        graph.initializer.remove(init)  # int8 zero points only the rewritten pairs read
    return out
