"""``parnet-eval CKPT --data SOURCE``: top-1/top-5 of every deployment stage, and agreement with fp32."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import args, common

DESCRIPTION = """\
Accuracy of every stage that applies, on a labeled set, batch 1 as deployed: torch train
form, torch deploy form, ONNX Runtime fp32 (whole graph, streams) and fp16, OpenVINO fp32
and bf16 (native-bf16 CPUs), and int8 (Q/DQ, each backend its own flavor, calibrated on
--calib; skipped without it) on every CPU backend. Each stage's agreement with the ONNX Runtime fp32 whole
graph is reported too.
JSON: {"accuracy": {stage: {top1, top5, agreement_with_fp32}}}.

  parnet-eval digits_parnet.pt --data digits --calib digits
"""


CALIBRATION = args.CalibrationArgs(gate=False)
REPORTS = args.ReportArgs()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-eval", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    common.add_checkpoint_args(p)
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="labeled set: digits (the held-out split), a .npz with labels, or a class-folder tree")
    CALIBRATION.add_to_parser(p)
    REPORTS.add_to_parser(p)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    calibration = CALIBRATION.parse(ns)
    reports = REPORTS.parse(ns, reads=(ns.checkpoint, ns.data, *([calibration.calib] if calibration.calib else [])))
    from ..bench.accuracy import evaluate_stages
    from ..checkpoint import load_checkpoint

    model = load_checkpoint(ns.checkpoint, arch=ns.arch, act=ns.act, use_ema=ns.ema)
    result = evaluate_stages(model, ns.data, calibration.calib, calibration.method)
    print(result.table())
    if reports.json:
        reports.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {reports.json}")
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-eval", main))


if __name__ == "__main__":
    cli()
