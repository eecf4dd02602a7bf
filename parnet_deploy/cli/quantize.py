"""``parnet-quantize EXPORT_DIR --calib SOURCE``: one calibrated int8 Q/DQ export for every runtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import common

DESCRIPTION = """\
Quantize an fp32 export to int8 (static PTQ with ONNX Runtime's tools): symmetric int8
activations and per-channel weights, biases in float, Q/DQ on the inputs of weighted ops.
The same graph runs on TensorRT (explicit quantization), OpenVINO and ONNX Runtime (which
runs it with uint8 activations, the same values). Accuracy-gated: top-1 on a labeled set
may drop at most --max-drop points, else more is kept in float, step by step; if no level
passes, nothing is written (exit 1). Writes export/<name>-int8/ with its own manifest.

  parnet-quantize export/digits --calib digits
  parnet-build export/digits-int8            # then build it for any backend
"""


def build_parser() -> argparse.ArgumentParser:
    from ..precision.int8 import METHODS

    p = argparse.ArgumentParser(prog="parnet-quantize", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export_dir", type=Path, help="an fp32 export directory written by parnet-export")
    p.add_argument("--calib", metavar="SOURCE", required=True,
                   help="calibration images: digits (its training split), a .npz, or a folder of images")
    p.add_argument("--calib-method", choices=METHODS, default="minmax")
    p.add_argument("--eval", dest="eval_source", metavar="SOURCE",
                   help="labeled set for the accuracy gate (default: digits -> held-out split, else --calib)")
    p.add_argument("--max-drop", type=float, default=1.0, help="max top-1 drop in points vs fp32 (default 1.0)")
    p.add_argument("--output", type=Path, default=Path("export"), help="parent folder (default: export)")
    p.add_argument("--name", help="output name (default: <export name>-int8)")
    p.add_argument("--force", action="store_true", help="replace an existing export of the same name")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..precision.quantize import QuantizeConfig, quantize_export

    quantize_export(args.export_dir, QuantizeConfig(calib=args.calib, method=args.calib_method,
                                                    max_drop=args.max_drop, eval_source=args.eval_source,
                                                    output=args.output, name=args.name, force=args.force))
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-quantize", main))


if __name__ == "__main__":
    cli()
