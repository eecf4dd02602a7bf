"""``parnet-export MODEL.onnx --batch``: a user's model at a static batch N, or with a bounded dynamic one.

The model is checked, partitioned and cut at its smallest batch (every shape static, as the
partitioner needs); for a dynamic batch each written graph then gets dim 0 of its inputs back as
the symbol ``batch`` and its shapes inferred again, which must carry ``batch`` to dim 0 of every
output. A model that bakes its batch in (a Reshape to a constant shape, say) fails here or in
the verification at the largest batch, and nothing is written.
"""

from __future__ import annotations

import onnx

from ..errors import UserError

BATCH_AXIS = "batch"  # the dim_param of a dynamic batch in the ONNX files written


def fix_batch(model: onnx.ModelProto, batch: int, where: str) -> None:
    """Dim 0 of every graph input set to ``batch``: it must be dynamic in the model, or already ``batch``."""
    weights = {t.name for t in model.graph.initializer}
    for v in model.graph.input:
        if v.name in weights:
            continue
        dims = v.type.tensor_type.shape.dim if v.type.HasField("tensor_type") else []
        if not dims:
            raise UserError(f"{where}: input {v.name[:80]!r} has no dim 0 to be the batch (--batch needs every "
                            "input batched in dim 0)")
        if dims[0].WhichOneof("value") == "dim_value" and dims[0].dim_value > 0 and dims[0].dim_value != batch:
            raise UserError(f"{where}: input {v.name[:80]!r} has a static batch of {dims[0].dim_value}; --batch "
                            f"needs dim 0 dynamic in the model (export it with a dynamic batch axis)")
        dims[0].dim_value = batch  # clears a dim_param (a oneof)


def with_dynamic_batch(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """``model`` (its shapes static) with dim 0 of its inputs the symbol ``batch``, shapes inferred again;
    refused where an output does not come out as ``batch`` by static dims."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    weights = {t.name for t in m.graph.initializer}
    for v in m.graph.input:
        if v.name not in weights:
            v.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    del m.graph.value_info[:]
    for v in m.graph.output:
        v.type.tensor_type.ClearField("shape")
    try:
        m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # onnx's InferenceError and friends
        raise UserError(f"{where}: shape inference with a dynamic batch failed: {str(e).splitlines()[0][:200]}") from e
    for v in m.graph.output:
        dims = list(v.type.tensor_type.shape.dim)
        shape = [d.dim_param or d.dim_value for d in dims]
        static_rest = all(d.WhichOneof("value") == "dim_value" for d in dims[1:])
        if not dims or dims[0].dim_param != BATCH_AXIS or not static_rest:
            raise UserError(f"{where}: output {v.name[:80]!r} comes out as {shape} with a dynamic batch, not "
                            f"[{BATCH_AXIS}, static dims...]: the model bakes its batch in; export it with a "
                            "dynamic batch axis, or use a static --batch N")
    return m
