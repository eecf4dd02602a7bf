"""``parnet-quantize EXPORT_DIR --calib SOURCE``: one calibrated int8 Q/DQ export, a graph flavor per engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import args, common

if TYPE_CHECKING:
    from ..precision.quantize import QuantizeConfig

DESCRIPTION = """\
Quantize an fp32 export to int8 (static PTQ with ONNX Runtime's tools), calibrated once, in
one flavor per engine: OpenVINO (uint8 activations, 7-bit weights, uint8 cuts between
subgraphs: the export's own files, which the C runtime runs), ONNX Runtime (symmetric int8,
7-bit weights, float cuts) and TensorRT (symmetric int8, 8-bit weights, its Q/DQ placement). Per-channel
weights, biases in float. parnet-build and the runtime pick the flavor for their engine.
Accuracy-gated, every flavor: top-1 on a labeled set may drop at most --max-drop points,
else more is kept in float, step by step; if no level passes, nothing is written (exit 1).
Writes export/<name>-int8/ with its own manifest.

A model that is not an image classifier (parnet-export MODEL.onnx: several inputs, or outputs
other than one row of logits) calibrates on an .npz with one array per input, named as the
input, of shape (N, *input_shape[1:]); its gate is the outputs' relative L2 error vs fp32,
in percent, at most --max-drop. The first conv of every input and the last Gemm/MatMul stay
float at the levels that keep them (as for ParNet's stem conv and classifier).

  parnet-quantize export/digits --calib digits
  parnet-build export/digits-int8            # then build it for any backend
"""


CALIBRATION = args.CalibrationArgs(required=True)
OUTPUT = args.OutputDirArgs("export", holds="exports", replaces="an existing export",
                            name_help="output name (default: <export name>-int8)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-quantize", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export_dir", type=Path, help="an fp32 export directory written by parnet-export")
    CALIBRATION.add_to_parser(p)
    OUTPUT.add_to_parser(p)
    return p


def parse(argv: list[str] | None = None) -> tuple[Path, QuantizeConfig]:
    """The command line → the export directory and a validated ``QuantizeConfig``."""
    ns = build_parser().parse_args(argv)
    calibration, output = CALIBRATION.parse(ns), OUTPUT.parse(ns)
    from ..precision.quantize import QuantizeConfig

    config = QuantizeConfig(calib=calibration.calib, method=calibration.method, max_drop=calibration.max_drop,
                            eval_source=calibration.eval_source, output=output.parent, name=output.name,
                            force=output.force)
    config.validate()
    return ns.export_dir, config


def main(argv: list[str] | None = None) -> int:
    export_dir, config = parse(argv)
    from ..precision.quantize import quantize_export

    quantize_export(export_dir, config)
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-quantize", main))


if __name__ == "__main__":
    cli()
