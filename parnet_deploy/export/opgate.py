"""TensorRT compatibility gate: every op of an exported graph must be one TensorRT's ONNX
parser supports.

Source: onnx/onnx-tensorrt ``docs/operators.md`` (the support matrix for TensorRT 10.x, opset
9-20), ops marked "Y" in the default ONNX domain. Kept deliberately to what ParNet-style
graphs and their precision variants (fp16 casts, Q/DQ) might contain plus the common rest;
an op missing here fails the export instead of failing later on the robot.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from ..errors import ToolchainError

TENSORRT_SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor
Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GroupNormalization GRU HardSigmoid HardSwish Identity If InstanceNormalization
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean Min Mod Mul Neg Not Or Pad PRelu Pow
QuantizeLinear Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize Round Scan
ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Where Xor
""".split())

TENSORRT_MAX_OPSET = 20
TENSORRT_SOURCE = "onnx/onnx-tensorrt docs/operators.md (TensorRT 10.x support matrix)"


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Ops (``domain::Op`` outside the default domain) that TensorRT's ONNX parser lacks."""
    bad = set()
    for node in _all_nodes(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in TENSORRT_SUPPORTED_OPS:
            bad.add(f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type)
    return sorted(bad)


def _all_nodes(nodes: Iterable[onnx.NodeProto]) -> Iterable[onnx.NodeProto]:
    stack = list(nodes)
    while stack:  # iterative: subgraphs (If/Loop) can nest
        node = stack.pop()
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                stack.extend(attr.g.node)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    stack.extend(g.node)


def check_tensorrt_ops(model: onnx.ModelProto, label: str) -> None:
    bad = unsupported_ops(model)
    if bad:
        raise ToolchainError(f"{label}: ops not supported by TensorRT's ONNX parser: {', '.join(bad)} "
                          f"(source: {TENSORRT_SOURCE})")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > TENSORRT_MAX_OPSET:
        raise ToolchainError(f"{label}: opset {opset} is newer than TensorRT 10 parses (<= {TENSORRT_MAX_OPSET})")
