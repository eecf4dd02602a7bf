"""``parnet-bench``: latency of an export (or engine) directory at batch N or across batches, or the Table-3
comparison."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..bench.batch import parse_batches
from ..errors import UserError
from . import args, common

DESCRIPTION = """\
Measure latency with trtexec semantics: warm up for --warmup seconds, then run until
both --iterations calls and --duration seconds are done. Reports min/mean/median/p90/p95/p99/
max, coefficient of variation, throughput, a per-stage breakdown with handoffs and the critical
path, and the environment. --batch N adds per-image latency (per call / N) and images/s;
--batch-sweep times several batches in one interleaved run (a table, --json, --plot).

  parnet-bench --engine export/parnet_s [--mode streams]
  parnet-bench --engine export/parnet_s_b1-8 --batch 4
  parnet-bench --engine export/parnet_s_b1-8 --batch-sweep 1,2,4,8 --plot sweep.png
  parnet-bench --engine engines/parnet_s --mode distributed
  parnet-bench --engine export/parnet_s --backend openvino [--precision bf16]
  parnet-bench --engine export/parnet_s --backend torch --device cuda:0 --mode streams --cuda-graph
  parnet-bench --compare ckpt.pt          # torch unfused / fused / ONNX Runtime / OpenVINO, one run
"""


RUNTIME = args.RuntimeArgs()
TIMING = args.TimingArgs()
REPORTS = args.ReportArgs(plot=True)


def batch_list(text: str) -> tuple[int, ...]:
    """``--batch-sweep``: ``1,2,4,8``."""
    try:
        return parse_batches(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive batches separated by commas, got {text[:40]!r}") from None


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
    batch = p.add_argument_group("batch (--engine)").add_mutually_exclusive_group()
    batch.add_argument("--batch", type=common.positive_int, metavar="N",
                       help="images a call: within a dynamic export's bounds (parnet-export --batch MIN..MAX), or a "
                            "static export's own (default: the export's smallest batch)")
    batch.add_argument("--batch-sweep", type=batch_list, metavar="N,N,...",
                       help="time every batch in one interleaved run: latency per call and per image, images/s; "
                            "--plot draws them against the batch")
    p.add_argument("--rounds", type=common.positive_int, default=5,
                   help="--batch-sweep: interleaved round-robin rounds (default 5)")
    REPORTS.add_to_parser(p)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    runtime, timing = RUNTIME.parse(ns), TIMING.parse(ns)
    reports = REPORTS.parse(ns, reads=tuple(p for p in (ns.engine, ns.compare) if p is not None))
    if ns.engine is None and (ns.batch is not None or ns.batch_sweep is not None):
        raise UserError("--batch and --batch-sweep apply to --engine; --compare runs batch 1")
    if ns.batch_sweep is not None:
        from ..bench.sweep import bench_batch_sweep

        sweep = bench_batch_sweep(ns.engine, ns.batch_sweep, timing=timing, rounds=ns.rounds,
                                  **runtime.load_kwargs())
        print(sweep.table())
        data = sweep.to_dict()
        points = {r.batch: (r.latency.median, r.latency.p99, r.images_per_s) for r in sweep.rows}
        return write_reports(reports, data, lambda path: _plot_sweep(points, path, f"{ns.engine} [{runtime.mode}]"))
    if ns.engine is not None:
        from ..bench.engine import bench_engine

        result = bench_engine(ns.engine, timing=timing, batch=ns.batch, **runtime.load_kwargs())
        print(result.table())
        data, series = result.to_dict(), {f"{runtime.mode}": result.samples_ms}
        title = f"{ns.engine} [{runtime.mode}, batch {result.batch}]"
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
    return write_reports(reports, data, lambda path: _plot_latency(series, path, title))


def _plot_latency(series, path, title) -> None:
    from ..bench.plot import plot_latency

    plot_latency(series, path, title)


def _plot_sweep(points, path, title) -> None:
    from ..bench.plot import plot_batch_sweep

    plot_batch_sweep({title: points}, path, "latency and throughput against the batch")


def write_reports(reports: args.Reports, data: dict, plot) -> int:
    if reports.json:
        reports.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {reports.json}")
    if reports.plot:
        plot(reports.plot)
        print(f"wrote {reports.plot}")
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-bench", main))


if __name__ == "__main__":
    cli()
