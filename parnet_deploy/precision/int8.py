"""Static post-training INT8 quantization to a Q/DQ ONNX (ONNX Runtime's quantization tools).

The whole graph is calibrated once and the subgraphs are cut from the quantized graph, so
every subgraph uses the same scales. Weights: int8, symmetric, per output channel.
Activations depend on who runs the graph (measured, ParNet-S 224, 2 cores):

- ``tensorrt`` flavor: int8 symmetric (TensorRT's explicit quantization needs zero points of 0).
- ``onnxruntime`` flavor: uint8 asymmetric: ORT's x86 kernels are u8s8; the s8s8 graph
  ran 1.6x *slower* than fp32 there, the u8s8 one 0.39x of fp32 (benchmarks/results).

RepVGG-style reparameterized nets can lose accuracy under naive PTQ, so the build measures
accuracy and, when the drop is too large, keeps more in float, step by step (`LEVELS`),
and reports what it kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..data import Dataset
from ..errors import UserError

METHODS = ("minmax", "entropy", "percentile")
FLAVORS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class Level:
    """How much to quantize: op types (None: all ORT supports) and nodes kept in float."""

    name: str
    op_types: tuple[str, ...] | None
    float_first_and_last: bool = False


LEVELS = (
    Level("every quantizable op", None),
    Level("Conv and Gemm only (elementwise ops in float)", ("Conv", "Gemm")),
    Level("Conv and Gemm, first conv and classifier in float", ("Conv", "Gemm"), True),
)


@dataclass(frozen=True)
class Int8Config:
    method: str = "minmax"
    flavor: str = "onnxruntime"
    calib_samples: int = 128

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.flavor not in FLAVORS:
            raise UserError(f"unknown int8 flavor {self.flavor!r}")


class _Reader:
    """ORT CalibrationDataReader over a Dataset (batch 1)."""

    def __init__(self, data: Dataset, input_name: str, limit: int):
        self._it = iter([{input_name: data.images[i:i + 1]} for i in range(min(limit, len(data)))])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - part of ORT's protocol
        pass


def _first_conv_and_gemm(model: onnx.ModelProto) -> list[str]:
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    gemms = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    return convs[:1] + gemms[-1:]


@contextlib.contextmanager
def _quiet():
    """ORT's quantizer prints histogram progress and warnings; keep the build log readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def quantize(fp32_path: Path, out_path: Path, calib: Dataset, config: Int8Config, level: Level,
             input_name: str = "image") -> list[str]:
    """Write a Q/DQ ONNX; returns the nodes kept in float on purpose."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    config.validate()
    if calib.images.shape[1:] != tuple(onnx.load(fp32_path).graph.input[0].type.tensor_type.shape.dim[i].dim_value
                                       for i in range(1, 4)):
        raise UserError(f"calibration images {calib.images.shape[1:]} do not fit the model's input")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.method]
    symmetric = config.flavor == "tensorrt"
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        excluded = _first_conv_and_gemm(onnx.load(pre)) if level.float_first_and_last else []
        quantize_static(
            str(pre), str(out_path), _Reader(calib, input_name, config.calib_samples),
            quant_format=QuantFormat.QDQ, per_channel=True, calibrate_method=method,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(level.op_types) if level.op_types else None, nodes_to_exclude=excluded,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
    return excluded


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
    from ..errors import VerificationError

    raise VerificationError("int8 accuracy drop too large at every quantization level:\n  " + "\n  ".join(report))
