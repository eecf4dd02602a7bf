"""``parnet-eval CKPT --data SOURCE``: top-1/top-5 of every deployment stage, and agreement with fp32."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import common

DESCRIPTION = """\
Accuracy of every stage that applies, on a labeled set, batch 1 as deployed: torch train
form, torch deploy form, ONNX Runtime fp32 (whole graph, streams) and fp16, OpenVINO fp32
and bf16 (native-bf16 CPUs), and int8 (one Q/DQ graph calibrated on --calib) on every CPU
backend. Each stage's agreement with the ONNX Runtime fp32 whole graph is reported too.
JSON: {"accuracy": {stage: {top1, top5, agreement_with_fp32}}}.

  parnet-eval digits_parnet.pt --data digits --calib digits
"""


def build_parser() -> argparse.ArgumentParser:
    from ..precision.int8 import METHODS

    p = argparse.ArgumentParser(prog="parnet-eval", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    common.add_checkpoint_args(p)
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="labeled set: digits (the held-out split), a .npz with labels, or a class-folder tree")
    p.add_argument("--calib", metavar="SOURCE", help="calibration set for the int8 stages (skipped without it); "
                                                     "digits means the training split")
    p.add_argument("--calib-method", choices=METHODS, default="minmax")
    p.add_argument("--json", type=Path, metavar="FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reads = (args.checkpoint, args.data, *([args.calib] if args.calib else []))
    common.check_writable_file(args.json, (".json",), reads, "--json")
    from ..bench.accuracy import evaluate_stages
    from ..checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint, arch=args.arch, act=args.act, use_ema=args.ema)
    result = evaluate_stages(model, args.data, args.calib, args.calib_method)
    print(result.table())
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-eval", main))


if __name__ == "__main__":
    cli()
