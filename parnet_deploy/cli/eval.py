"""``parnet-eval CKPT --data SOURCE``: top-1/top-5 of every deployment stage, and agreement with fp32."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from . import common

DESCRIPTION = """\
Accuracy of every stage that applies, on a labeled set, batch 1 as deployed: torch train
form, torch deploy form, ONNX Runtime fp32 whole graph, ONNX Runtime streams, fp16 (ONNX
Runtime), int8 (Q/DQ, calibrated on --calib). Each stage's agreement with the fp32 whole graph
is reported too. JSON: {"accuracy": {stage: {top1, top5, agreement_with_fp32}}}.

  parnet-eval digits_parnet.pt --data digits --calib digits
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-eval", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    common.add_checkpoint_args(p)
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="labeled set: digits (the held-out split), a .npz with labels, or a class-folder tree")
    p.add_argument("--calib", metavar="SOURCE", help="calibration set for the int8 stage (skipped without it); "
                                                     "digits means the training split")
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default="minmax")
    p.add_argument("--json", type=Path, metavar="FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..checkpoint import load_checkpoint
    from ..data import load_source
    from ..export.pipeline import ExportConfig, export_model
    from ..precision.accuracy import evaluate
    from ..reparam import reparameterize
    from ..runtime import load

    model = load_checkpoint(args.checkpoint, arch=args.arch, act=args.act, use_ema=args.ema)
    res = (model.config.default_resolution,) * 2
    data = load_source("digits:heldout" if args.data == "digits" else args.data, res)
    if data.labels is None:
        from ..errors import UserError

        raise UserError(f"{args.data}: accuracy needs labels")
    from ..bench.compare import torch_runner

    stages = {"torch train form": torch_runner(model.eval()), "torch deploy form": torch_runner(reparameterize(model))}
    with tempfile.TemporaryDirectory(prefix="parnet-eval-") as tmp:
        quiet = lambda _: None  # noqa: E731
        d32, _ = export_model(model, ExportConfig(output=Path(tmp), name="fp32", resolution=res, split="shared",
                                                  verify=False), log=quiet)
        d16, _ = export_model(model, ExportConfig(output=Path(tmp), name="fp16", resolution=res, precision="fp16",
                                                  verify=False), log=quiet)
        runners = {"onnxruntime fp32 whole": load(d32), "onnxruntime fp32 streams": load(d32, mode="streams"),
                   "onnxruntime fp16 whole": load(d16)}
        if args.calib:
            from ..engines.build import BuildConfig, build_engines

            d8, m8 = build_engines(d32, BuildConfig(output=Path(tmp) / "engines", precision="int8", calib=args.calib,
                                                    calib_method=args.calib_method, max_drop=100.0,
                                                    measure_iterations=1, eval_source=args.data), log=quiet)
            runners["onnxruntime int8 (Q/DQ) whole"] = load(d8)
        stages |= runners
        results = {name: evaluate(run, data) for name, run in stages.items()}
        for r in runners.values():
            r.close()
    ref = results["onnxruntime fp32 whole"]
    print(f"accuracy on {data.name} ({len(data)} images, batch 1)")
    print(f"  {'stage':<34}{'top-1':>9}{'top-5':>9}{'agreement with fp32':>22}")
    for name, acc in results.items():
        print(f"  {name:<34}{acc.top1:>9.2%}{acc.top5:>9.2%}{acc.agreement(ref):>22.2%}")
    if args.json:
        args.json.write_text(json.dumps({"data": data.name, "images": len(data), "accuracy": {
            name: {"top1": a.top1, "top5": a.top5, "agreement_with_fp32": a.agreement(ref)}
            for name, a in results.items()}}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-eval", main))


if __name__ == "__main__":
    cli()
