"""Static post-training INT8 quantization to Q/DQ ONNX graphs, one flavor per engine family: the driver.

ONNX Runtime's quantization tools calibrate; where the pairs go is decided by `placement` (a level,
then each flavor's selection from it), and `rewrite` makes ORT's output follow it exactly
(onnx-graphsurgeon). All flavors calibrate the same images the same way.

- OpenVINO flavor: uint8 activations, asymmetric per tensor (zero point 0 on ReLU outputs: all 8
  bits for non-negative values, no s8 compensation in oneDNN's u8s8 kernels); weights int8
  symmetric per output channel, 7-bit (see `quantize`).
- ONNX Runtime flavor: int8 symmetric activations, which its backend runs as uint8 with zero point
  128 (exact; asymmetric uint8 was not faster there: 1.04× the previous graph in two runs), 7-bit
  weights.
- TensorRT flavor: int8 symmetric activations (zero point 0), 8-bit weights, what its explicit
  quantization takes.
- biases stay float everywhere: an int32 bias DequantizeLinear does not parse in TensorRT (its
  dequantize layer takes 8-bit input only).

The whole graph is calibrated once and the subgraphs are cut from it, so every subgraph uses the
same scales. RepVGG-style reparameterized nets can lose accuracy under naive PTQ, so the build
measures accuracy and, when the drop is too large, keeps more in float, step by step
(`placement.LEVELS`), and reports what it kept.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from ..data import Dataset, FeedSet
from ..data.batching import padded_batches
from ..errors import UserError, VerificationError
from ..quiet import quiet
from . import rewrite
from .placement import FLAVORS, LEVELS, Level, quantized_inputs

METHODS = ("minmax", "entropy", "percentile")

@dataclass(frozen=True)
class Int8Config:
    method: str = "minmax"
    calib_samples: int = 128
    batch: tuple[int, int] = (1, 1)  # (min, max) batch the fp32 graph takes (data.batching.batch_bounds)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.calib_samples < 1:
            raise UserError(f"calibration needs at least one sample, got {self.calib_samples}")


class _Reader:
    """ORT CalibrationDataReader over a Dataset or FeedSet, batched.

    minmax takes the largest batch the graph allows: a min and a max over every value are the same
    however the rows are grouped. ORT's histograms (entropy, percentile) re-bin as their range
    grows, so their result depends on the grouping; they take the smallest batch (1 where the
    graph allows it: the same scales as before batching)."""

    def __init__(self, data: Dataset | FeedSet, input_names: tuple[str, ...], config: Int8Config):
        size = config.batch[1] if config.method == "minmax" else config.batch[0]
        arrays = data.arrays_for(input_names, config.calib_samples)
        self._it = iter([feeds for feeds, _ in padded_batches(arrays, config.batch, size)])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - part of ORT's protocol
        pass


def quantize(fp32_path: Path, out_path: Path, calib: Dataset | FeedSet, config: Int8Config, level: Level,
             flavors: dict[str, Path] | None = None) -> list[str]:
    """Write the symmetric int8 Q/DQ ONNX; returns the nodes kept in float on purpose.

    ``out_path`` gets the first of `placement.FLAVORS` (OpenVINO's), ``flavors`` maps the names of others
    to their paths. Every flavor is calibrated on the same images the same way: equal activation scales.

    The CPU flavors' weights are 7-bit (|q| <= 64, ORT's ``reduce_range``). x86 CPUs without VNNI
    multiply uint8 activations by int8 weights with ``vpmaddubsw``, which adds pairs of products into
    int16 *with saturation*; ONNX Runtime and OpenVINO (oneDNN) both take that path. With 8-bit weights
    a pair reaches 2 x 255 x 127 > 32767: on an AMD EPYC without VNNI the digits model's logits came out
    up to 1.8 (73% of their range) away from what the Q/DQ graph means, on both engines. With 7-bit
    weights (2 x 255 x 64 < 32768) OpenVINO matched the graph exactly and ONNX Runtime within 0.01
    (requantization rounding). TensorRT accumulates in int32, so its flavor keeps 8-bit weights.

    A weight channel's scale is ``max|w| / 127`` except where ``bias / (input scale * weight scale)``
    would overflow int32 (a near-dead channel beside a large bias): ORT widens that scale, and that is
    kept although the bias stays float, because ORT's own session-time fusion turns the float bias into
    exactly that int32.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    config.validate()
    graph_inputs = onnx.load(fp32_path).graph.input
    input_names = tuple(i.name for i in graph_inputs)
    first = calib.arrays_for(input_names, 1)
    for i in graph_inputs:
        dims = tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
        if tuple(first[i.name].shape[1:]) != dims[1:]:
            raise UserError(f"calibration data {first[i.name].shape[1:]} does not fit the model's input {i.name!r} "
                            f"{dims}")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.method]
    with tempfile.TemporaryDirectory() as tmp, quiet():
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        graph = gs.import_onnx(onnx.load(pre))
        rewrite.name_nodes_uniquely(graph)
        rewrite.fold_gemm_beta(graph)
        model = gs.export_onnx(graph.cleanup())
        onnx.save(model, pre)
        edges, excluded = quantized_inputs(graph, level)
        nodes = sorted({name for name, _ in edges})
        if not nodes:
            raise UserError(f"nothing to quantize at level {level.name!r}")
        wanted = {FLAVORS[0].name: out_path, **(flavors or {})}
        unknown = set(wanted) - {f.name for f in FLAVORS}
        if unknown:
            raise ValueError(f"unknown int8 flavors {sorted(unknown)}")
        for unsigned, seven_bit in sorted({(f.unsigned_activations, f.seven_bit_weights) for f in FLAVORS
                                           if f.name in wanted}):
            raw = Path(tmp) / "raw.onnx"
            quantize_static(
                str(pre), str(raw), _Reader(calib, input_names, config),
                quant_format=QuantFormat.QDQ, per_channel=True, calibrate_method=method, reduce_range=seven_bit,
                activation_type=QuantType.QUInt8 if unsigned else QuantType.QInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=sorted({n.op for n in graph.nodes if n.name in nodes}),
                nodes_to_quantize=nodes,
                extra_options={
                    "ActivationSymmetric": not unsigned, "WeightSymmetric": True,
                    "QuantizeBias": False,
                    # QuantizeBias=False still widens a weight's scale where bias / (input scale * weight
                    # scale) would overflow int32. Keep that (no QDQDisableWeightAdjustForInt32Bias): ORT's
                    # session-time WeightBiasQuantization turns the float bias into exactly that int32 to
                    # fuse QLinearConv, and overflows without it (test graph: outputs off by 30%).
                    "DedicatedQDQPair": True,
                    "OpTypesToExcludeOutputQuantization": sorted({n.op for n in graph.nodes}),
                },
            )
            raw_model = onnx.load(raw)
            for flavor in FLAVORS:
                if flavor.name in wanted and (flavor.unsigned_activations, flavor.seven_bit_weights) == (
                        unsigned, seven_bit):
                    quantized = rewrite.follow_placement(raw_model, flavor.select(graph, edges), model)
                    if flavor.quantized_cuts:  # before the gate: it judges the graph that ships
                        quantized = rewrite.quantize_before_movement(quantized)
                    rewrite.check(quantized, symmetric_int8=not unsigned)
                    onnx.save(quantized, wanted[flavor.name])
    return excluded


def quantize_until_accurate(fp32_path: Path, out_path: Path, calib: Dataset | FeedSet, config: Int8Config,
                            accept: Callable[[Path], tuple[bool, str]], log: Callable[[str], None],
                            flavors: dict[str, Path] | None = None) -> tuple[Level, list[str], str]:
    """Try `LEVELS` in order; the first whose graphs (every flavor) ``accept`` passes wins. Raises if none does."""
    report = []
    for level in LEVELS:
        excluded = quantize(fp32_path, out_path, calib, config, level, flavors=flavors)
        ok, summary = accept(out_path)
        for name, path in (flavors or {}).items():
            ok_flavor, summary_flavor = accept(path)
            ok, summary = ok and ok_flavor, f"{summary}; {name} flavor: {summary_flavor}"
        log(f"  int8 ({level.name}): {summary} -> {'accepted' if ok else 'rejected'}")
        report.append(f"{level.name}: {summary}")
        if ok:
            return level, excluded, summary
    raise VerificationError("int8 accuracy drop too large at every quantization level:\n  " + "\n  ".join(report))
