"""Static post-training INT8 quantization to ONE Q/DQ ONNX graph for every runtime.

ONNX Runtime's quantization tools calibrate it; where the pairs go is decided here (`_placement`,
enforced on ORT's output by `_place`):

- activations: int8, symmetric (zero point 0), per tensor: what TensorRT's explicit quantization
  needs; OpenVINO runs the graph as is. ONNX Runtime's x86 kernels are u8s8, so its backend rewrites
  the activation pairs to uint8 with zero point 128, which represents exactly the same values
  (``backends/onnxruntime/qdq.py``). Nobody picks a "flavor".
- weights: int8, symmetric, per output channel (scale ``max|w| / 127``, see `quantize` for the one
  exception).
- biases stay float: an int32 bias DequantizeLinear does not parse in TensorRT (its dequantize layer
  takes 8-bit input only).
- placement, after TensorRT's Q/DQ guidance and NVIDIA ModelOpt's settings for ORT-quantized graphs:
  pairs go on the *inputs* of the ops a level names (ORT's output quantization is off for every op
  type), one dedicated pair per consuming input. Weighted ops (Conv, Gemm) get one on their activation
  input, their weight per channel. Outputs of Sigmoid and of global pools never get a pair: the SE
  gates (1x1 convs on a pooled 1x1 tensor, GEMVs with no int8 speed-up to win) and the classifier on
  the pooled features stay float.

The whole graph is calibrated once and the subgraphs are cut from it, so every subgraph uses the
same scales. RepVGG-style reparameterized nets can lose accuracy under naive PTQ, so the build
measures accuracy and, when the drop is too large, keeps more in float, step by step (`LEVELS`:
the order is measured, see there), and reports what it kept.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..data import Dataset
from ..errors import ToolchainError, UserError, VerificationError
from ..quiet import quiet

METHODS = ("minmax", "entropy", "percentile")

WEIGHTED = ("Conv", "Gemm")  # ops with a weight: Q/DQ on the activation input, the weight per channel
GATES = ("Sigmoid", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean")  # outputs never quantized
_SHAPE_ONLY = ("Flatten", "Reshape", "Squeeze", "Unsqueeze")  # looked through to find a pooled input


@dataclass(frozen=True)
class Level:
    """Where Q/DQ pairs go: on the activation inputs of ``op_types`` (a weighted op's input 0, every
    activation input of the others), never on an input that comes straight from a `GATES` op.
    ``float_first_and_last``: the first conv and the classifier stay float. ``residual_only``: an Add
    gets a pair on its residual input only, not on the one a Conv/Gemm produced (TensorRT then fuses
    the Add into that Conv; ORT then runs that Conv in float: see `LEVELS`)."""

    name: str
    op_types: tuple[str, ...]
    float_first_and_last: bool = False
    residual_only: bool = False


# Order measured (a one-off run, not kept: ParNet-S 224 random weights, batch 1, 2 threads, AMD EPYC Zen 4
# with AVX-512 VNNI; ORT 1.32 on the graph rewritten to u8 activations, OpenVINO 2026.4 on it as is;
# medians, this VM's noise about +-10%):       ORT ms   OpenVINO ms   digits logits rel. error
#   fp32                                          64.7      50.0          -
#   level 0                                       25.7      17.8          0.023
#   level 1                                       40.8      17.9          0.019
#   level 2                                       91.4      22.9          0.016
# ORT fuses DQ -> Conv -> Q into its u8s8 QLinearConv only when the Conv's output is quantized. With
# pairs on Conv inputs alone (TensorRT's strictest placement) it runs float convs plus Q/DQ: slower than
# fp32. Level 0 also puts pairs on the Add and Mul inputs that Convs feed, which gives ORT its int8
# convs (TensorRT fuses Conv + Q into an int8-output conv); OpenVINO is fast at every level. A quantized
# first conv (3 input channels) was slower (ORT 31.0 ms) and tripled the error (0.079), so every level
# keeps it, and the classifier, in float. Digits top-1 stayed 100.00% (= fp32) at every level.
LEVELS = (
    Level("Conv/Gemm, Add and Mul inputs (first conv and classifier in float)", ("Conv", "Gemm", "Add", "Mul"),
          float_first_and_last=True),
    Level("Conv/Gemm and Add inputs (Mul, first conv and classifier in float)", ("Conv", "Gemm", "Add"),
          float_first_and_last=True),
    Level("Conv/Gemm inputs only (elementwise ops, first conv and classifier in float)", ("Conv", "Gemm"),
          float_first_and_last=True),
)


@dataclass(frozen=True)
class Int8Config:
    method: str = "minmax"
    calib_samples: int = 128

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.calib_samples < 1:
            raise UserError(f"calibration needs at least one sample, got {self.calib_samples}")


class _Reader:
    """ORT CalibrationDataReader over a Dataset (batch 1)."""

    def __init__(self, data: Dataset, input_name: str, limit: int):
        self._it = iter([{input_name: data.images[i:i + 1]} for i in range(min(limit, len(data)))])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - part of ORT's protocol
        pass


def _first_conv_and_gemm(model: onnx.ModelProto) -> list[str]:
    """The conv that reads the image (else the first conv) and the last Gemm/MatMul (the classifier)."""
    inputs = {i.name for i in model.graph.input}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    first = [n for n in convs if n.input[0] in inputs] or convs
    gemms = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    return [n.name for n in first[:1]] + gemms[-1:]


def _placement(model: onnx.ModelProto, level: Level) -> tuple[set[tuple[str, int]], list[str]]:
    """The (node name, input index) edges that get a Q/DQ pair, and the nodes kept in float on purpose."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def source(tensor: str):
        node = producer.get(tensor)
        while node is not None and node.op_type in _SHAPE_ONLY:
            node = producer.get(node.input[0])
        return node

    excluded = _first_conv_and_gemm(model) if level.float_first_and_last else []
    edges: set[tuple[str, int]] = set()
    for node in graph.node:
        if node.op_type not in level.op_types or node.name in excluded:
            continue
        inputs = [0] if node.op_type in WEIGHTED else [i for i, t in enumerate(node.input) if t and t not in inits]
        if node.op_type in WEIGHTED and node.input[0] in inits:
            inputs = []
        srcs = {i: source(node.input[i]) for i in inputs}
        inputs = [i for i in inputs if srcs[i] is None or srcs[i].op_type not in GATES]
        if node.op_type == "Add" and level.residual_only:  # the Conv/Gemm-produced input stays float
            residual = [i for i in inputs if producer.get(node.input[i]) is None
                        or producer[node.input[i]].op_type not in WEIGHTED]
            inputs = residual if residual else inputs[1:]
        edges.update((node.name, i) for i in inputs)
    return edges, excluded


def _fold_gemm_beta(model: onnx.ModelProto) -> None:
    """ORT's Gemm quantizer resets ``beta`` to 1 even when the bias is left in float: fold it first."""
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        beta = next((a for a in node.attribute if a.name == "beta"), None)
        if node.op_type != "Gemm" or beta is None or beta.f == 1.0 or len(node.input) < 3 or node.input[2] not in inits:
            continue
        c = inits[node.input[2]]
        c.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(c) * np.float32(beta.f), c.name))
        beta.f = 1.0


def _place(model: onnx.ModelProto, edges: set[tuple[str, int]], original: onnx.ModelProto) -> onnx.ModelProto:
    """Make ORT's Q/DQ graph follow ``edges`` exactly.

    ORT's ``DedicatedQDQPair`` only dedicates pairs among *quantized* consumers: a tensor read by one
    quantized node and some float ones gets a single pair that every reader uses (a GlobalAveragePool
    next to a Conv reads the fake-quantized tensor). Here every activation pair feeds exactly one
    wanted (node, input); other readers go back to the float tensor. Constants that ORT quantized as
    an elementwise op's input (not a weighted op's weight) go back to their float initializers.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    float_inits = {i.name: i for i in original.graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for n in graph.node:
        for i, t in enumerate(n.input):
            readers[t].append((n, i))
    names = {n.name for n in graph.node} | {t for n in graph.node for t in n.output}

    def fresh(base: str) -> str:
        k = 1
        while f"{base}_{k}" in names:
            k += 1
        names.add(f"{base}_{k}")
        return f"{base}_{k}"

    copies: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = producer.get(dq.input[0])
        if q is None:  # a constant's DQ: keep weights of weighted ops, restore other constants to float
            for n, i in readers[dq.output[0]]:
                if not (n.op_type in WEIGHTED and i == 1):
                    src = _original_constant(dq, float_inits)
                    if src is None:
                        raise ToolchainError(f"cannot restore the float constant behind {dq.name}")
                    if src.name not in inits:
                        graph.initializer.append(src)
                        inits[src.name] = src
                    n.input[i] = src.name
            continue
        if q.op_type != "QuantizeLinear":
            continue
        wanted = []
        for n, i in readers[dq.output[0]]:
            if (n.name, i) in edges and not any(m is n and j == i for m, j in wanted):
                wanted.append((n, i))
            else:
                n.input[i] = q.input[0]
        for n, i in wanted[1:]:  # one dedicated pair per consuming input
            q2, dq2 = onnx.NodeProto(), onnx.NodeProto()
            q2.CopyFrom(q)
            dq2.CopyFrom(dq)
            q2.name, dq2.name = fresh(q.name), fresh(dq.name)
            q2.output[0] = dq2.input[0] = fresh(q.output[0])
            dq2.output[0] = n.input[i] = fresh(dq.output[0])
            copies[dq.name] += [q2, dq2]

    nodes = []
    for n in graph.node:
        nodes.append(n)
        nodes.extend(copies.get(n.name, ()))
    graph.ClearField("node")
    graph.node.extend(nodes)
    _drop_dead(model)
    return model


def _original_constant(dq: onnx.NodeProto, float_inits: dict) -> onnx.TensorProto | None:
    """The float initializer ORT quantized into ``dq``'s input (ORT names it ``<name>_quantized``)."""
    name = dq.input[0].removesuffix("_quantized")
    return float_inits.get(name) if name != dq.input[0] else None


def _drop_dead(model: onnx.ModelProto) -> None:
    """Remove Q/DQ nodes nobody reads, then initializers and value_info nobody refers to."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        read = {t for n in graph.node for t in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {t for n in graph.node for t in n.input} | outputs
    keep = [i for i in graph.initializer if i.name in read]
    graph.ClearField("initializer")
    graph.initializer.extend(keep)
    produced = {t for n in graph.node for t in n.output}
    vi = [v for v in graph.value_info if v.name in produced]
    graph.ClearField("value_info")
    graph.value_info.extend(vi)


def quantize(fp32_path: Path, out_path: Path, calib: Dataset, config: Int8Config, level: Level,
             input_name: str = "image") -> list[str]:
    """Write the symmetric int8 Q/DQ ONNX; returns the nodes kept in float on purpose.

    A weight channel's scale is ``max|w| / 127`` except where ``bias / (input scale * weight scale)``
    would overflow int32 (a near-dead channel beside a large bias): ORT widens that scale, and that is
    kept although the bias stays float, because ORT's own session-time fusion turns the float bias into
    exactly that int32.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    config.validate()
    dims = onnx.load(fp32_path).graph.input[0].type.tensor_type.shape.dim
    if tuple(calib.images.shape[1:]) != tuple(d.dim_value for d in dims[1:]):
        raise UserError(f"calibration images {calib.images.shape[1:]} do not fit the model's input")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.method]
    with tempfile.TemporaryDirectory() as tmp, quiet():
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        model = onnx.load(pre)
        seen: set[str] = set()
        for k, node in enumerate(model.graph.node):  # placement goes by node name: make names unique
            if not node.name or node.name in seen:
                node.name = f"{node.op_type}_{k}_q"
            seen.add(node.name)
        _fold_gemm_beta(model)
        onnx.save(model, pre)
        edges, excluded = _placement(model, level)
        nodes = sorted({name for name, _ in edges})
        if not nodes:
            raise UserError(f"nothing to quantize at level {level.name!r}")
        raw = Path(tmp) / "raw.onnx"
        quantize_static(
            str(pre), str(raw), _Reader(calib, input_name, config.calib_samples),
            quant_format=QuantFormat.QDQ, per_channel=True, calibrate_method=method,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=sorted({n.op_type for n in model.graph.node if n.name in nodes}),
            nodes_to_quantize=nodes,
            extra_options={
                "ActivationSymmetric": True, "WeightSymmetric": True,
                "QuantizeBias": False,
                # QuantizeBias=False still widens a weight's scale where bias / (input scale * weight
                # scale) would overflow int32. Keep that (no QDQDisableWeightAdjustForInt32Bias): ORT's
                # session-time WeightBiasQuantization turns the float bias into exactly that int32 to
                # fuse QLinearConv, and overflows without it (test graph: outputs off by 30%).
                "DedicatedQDQPair": True,
                "OpTypesToExcludeOutputQuantization": sorted({n.op_type for n in model.graph.node}),
            },
        )
        quantized = _place(onnx.load(raw), edges, model)
        _check(quantized)
        onnx.save(quantized, out_path)
    return excluded


def _check(model: onnx.ModelProto) -> None:
    """What every runtime relies on; ORT's options have surprised us before (see `_place`)."""
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        const = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if const is not None and const.data_type != onnx.TensorProto.INT8:
            raise ToolchainError(f"{n.name}: a {onnx.TensorProto.DataType.Name(const.data_type)} constant "
                                 "DequantizeLinear (TensorRT's dequantize layer takes 8-bit input only)")
        if n.op_type == "QuantizeLinear":
            zp = inits.get(n.input[2]) if len(n.input) > 2 else None
            if zp is None or zp.data_type != onnx.TensorProto.INT8 or onnx.numpy_helper.to_array(zp).any():
                raise ToolchainError(f"{n.name}: activations must be int8 with zero point 0")


def quantize_until_accurate(fp32_path: Path, out_path: Path, calib: Dataset, config: Int8Config,
                            accept: Callable[[Path], tuple[bool, str]],
                            log: Callable[[str], None]) -> tuple[Level, list[str], str]:
    """Try `LEVELS` in order; the first whose graph ``accept`` passes wins. Raises if none does."""
    report = []
    for level in LEVELS:
        excluded = quantize(fp32_path, out_path, calib, config, level)
        ok, summary = accept(out_path)
        log(f"  int8 ({level.name}): {summary} -> {'accepted' if ok else 'rejected'}")
        report.append(f"{level.name}: {summary}")
        if ok:
            return level, excluded, summary
    raise VerificationError("int8 accuracy drop too large at every quantization level:\n  " + "\n  ".join(report))
