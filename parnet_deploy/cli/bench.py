"""``parnet-bench``: batch-1 latency of an export (or engine) directory, or the Table-3 comparison."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import common

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


def build_parser() -> argparse.ArgumentParser:
    from ..backends import BACKENDS
    from ..runtime import MODES

    p = argparse.ArgumentParser(prog="parnet-bench", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--engine", type=Path, metavar="DIR",
                      help="an export directory (export/<name>) or an engine directory (engines/<name>)")
    what.add_argument("--compare", type=Path, metavar="CKPT",
                      help="checkpoint: compare torch train form, torch deploy form and ONNX Runtime (whole, "
                           "streams for each split) in one interleaved run")
    run = p.add_argument_group("runtime")
    run.add_argument("--backend", choices=BACKENDS,
                     help="exports: onnxruntime (default) or openvino; engine directories name their own")
    run.add_argument("--precision", choices=["fp16", "bf16"],
                     help="exports only: bf16 runs an fp32 export with OpenVINO's bf16 inference precision; "
                          "the torch backend runs an fp32 export in fp16 or bf16")
    run.add_argument("--device", help="exports: cpu (default) or cuda:N (torch; onnxruntime with onnxruntime-gpu)")
    run.add_argument("--cuda-graph", action="store_true",
                     help="whole/streams on one GPU (torch, tensorrt): capture each call into a CUDA graph once "
                          "and replay it")
    run.add_argument("--mode", default="whole", choices=MODES,
                     help="whole: one session; streams: one per subgraph, independent ones concurrently; "
                          "distributed: one process per device (torch.distributed, gloo on CPU / NCCL on GPUs)")
    run.add_argument("--threads", type=common.thread_count, default=os.cpu_count() or 1,
                     help="threads in all (default: all cores)")
    t = p.add_argument_group("timing")
    t.add_argument("--warmup", type=common.finite_seconds, default=1.0, help="warm-up seconds (default 1)")
    t.add_argument("--iterations", type=common.positive_int, default=50, help="minimum calls (default 50)")
    t.add_argument("--duration", type=common.finite_seconds, default=3.0, help="minimum seconds (default 3)")
    common.add_checkpoint_args(p)
    p.add_argument("--resolution", type=common.resolution, help="--compare only: input size (default: native)")
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    out.add_argument("--plot", type=Path, metavar="FILE.png", help="latency histogram and CDF")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..bench.timing import TimingConfig

    timing = TimingConfig(args.warmup, args.iterations, args.duration)
    timing.validate()
    reads = tuple(p for p in (args.engine, args.compare) if p is not None)
    common.check_writable_file(args.json, (".json",), reads, "--json")
    common.check_writable_file(args.plot, (".png", ".svg", ".pdf"), reads, "--plot")
    if args.engine is not None:
        from ..bench.engine import bench_engine

        result = bench_engine(args.engine, mode=args.mode, backend=args.backend, threads=args.threads, timing=timing,
                              precision=args.precision, device=args.device, cuda_graph=args.cuda_graph)
        print(result.table())
        data, series = result.to_dict(), {f"{args.mode}": result.samples_ms}
        title = f"{args.engine} [{args.mode}]"
    else:
        from ..bench.compare import run_compare
        from ..checkpoint import load_checkpoint

        model = load_checkpoint(args.compare, arch=args.arch, act=args.act, use_ema=args.ema)
        res = args.resolution or (model.config.default_resolution,) * 2
        result = run_compare(model, res, args.threads, timing)
        print(result.table())
        data = result.to_dict()
        series = {r["name"]: r["samples_ms"] for r in result.rows}
        for r in data["rows"]:
            r.pop("samples_ms")
        title = f"{model.config.arch} {res[0]}x{res[1]} batch 1"
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        from ..bench.plot import plot_latency

        plot_latency(series, args.plot, title)
        print(f"wrote {args.plot}")
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-bench", main))


if __name__ == "__main__":
    cli()
