"""``parnet-bench``: batch-1 latency of an export (or engine) directory, or the Table-3 comparison."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import args, common

DESCRIPTION = """\
Measure batch-1 latency with trtexec semantics: warm up for --warmup seconds, then run until
both --iterations calls and --duration seconds are done. Reports min/mean/median/p90/p95/p99/
max, coefficient of variation, throughput, a per-stage breakdown with handoffs and the critical
path, and the environment.

  parnet-bench --engine export/parnet_s [--mode streams]
  parnet-bench --engine engines/parnet_s --mode distributed
  parnet-bench --engine export/parnet_s --backend openvino [--precision bf16]
  parnet-bench --engine export/parnet_s --backend torch --device cuda:0 --mode streams --cuda-graph
  parnet-bench --compare ckpt.pt          # torch unfused / fused / ONNX Runtime / OpenVINO, one run
"""


RUNTIME = args.RuntimeArgs()
TIMING = args.TimingArgs()
REPORTS = args.ReportArgs(plot=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-bench", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--engine", type=Path, metavar="DIR",
                      help="an export directory (export/<name>) or an engine directory (engines/<name>)")
    what.add_argument("--compare", type=Path, metavar="CKPT",
                      help="checkpoint: compare torch train form, torch deploy form and ONNX Runtime (whole, "
                           "streams for each split) in one interleaved run")
    RUNTIME.add_to_parser(p)
    TIMING.add_to_parser(p)
    common.add_checkpoint_args(p)
    p.add_argument("--resolution", type=common.resolution, help="--compare only: input size (default: native)")
    REPORTS.add_to_parser(p)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    runtime, timing = RUNTIME.parse(ns), TIMING.parse(ns)
    reports = REPORTS.parse(ns, reads=tuple(p for p in (ns.engine, ns.compare) if p is not None))
    if ns.engine is not None:
        from ..bench.engine import bench_engine

        result = bench_engine(ns.engine, timing=timing, **runtime.load_kwargs())
        print(result.table())
        data, series = result.to_dict(), {f"{runtime.mode}": result.samples_ms}
        title = f"{ns.engine} [{runtime.mode}]"
    else:
        from ..bench.compare import run_compare
        from ..checkpoint import load_checkpoint

        model = load_checkpoint(ns.compare, arch=ns.arch, act=ns.act, use_ema=ns.ema)
        res = ns.resolution or (model.config.default_resolution,) * 2
        result = run_compare(model, res, runtime.threads, timing)
        print(result.table())
        data = result.to_dict()
        series = {r["name"]: r["samples_ms"] for r in result.rows}
        for r in data["rows"]:
            r.pop("samples_ms")
        title = f"{model.config.arch} {res[0]}x{res[1]} batch 1"
    if reports.json:
        reports.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {reports.json}")
    if reports.plot:
        from ..bench.plot import plot_latency

        plot_latency(series, reports.plot, title)
        print(f"wrote {reports.plot}")
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-bench", main))


if __name__ == "__main__":
    cli()
