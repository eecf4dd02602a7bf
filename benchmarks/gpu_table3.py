"""The paper's Table 3 on the GPU here: ParNet-L and ParNet-S, 224x224, batch 1; one interleaved run, recorded.

    python benchmarks/gpu_table3.py                          # both variants, every row
    python benchmarks/gpu_table3.py --arch parnet_s --rounds 3 --iterations 100
    python benchmarks/gpu_table3.py --output $OUT            # results somewhere else

Rows (fp32, and fp16 where it says so):
  torch unfused             the train-form model (eval mode), called directly
  torch deploy              the reparameterized model, called directly
  torch deploy + graph      the same, captured once into a CUDA graph and replayed
  runtime whole (+ graph)   the export's whole graph through the CUDA-stream executor (torch backend)
  runtime 3 streams (+ graph)  the export's subgraphs, one CUDA stream each, shared stem
  tensorrt ...              the same two, on TensorRT engines, when TensorRT imports

fp32 is IEEE fp32 (TF32 off for cuDNN and cuBLAS). GPU time is CUDA events on the stream that
runs the call, first start to last done (host wall time is recorded beside it). Rows are measured
in rounds, interleaved, so drift hits them alike; compare ratios within one run. Weights are random
(latency does not depend on them); every row's logits are checked against the unfused fp32 model
before timing (the CPU comparison's tolerance per precision; TensorRT fp32 allows TF32's 1e-3), and
a row that disagrees stops the run. Without a graph, the streams row's per-stream CUDA events say
whether the streams overlapped (``overlap``: summed stream time over the span from the first
stream's start to the last one's end; 1.0 = one after another).

Writes <output>/gpu_table3_<gpu>.{json,md}. Needs a CUDA device and a CUDA build of PyTorch.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FUSED_TARGET = 1.38  # the paper's fused speed-up (deploy + graph vs unfused, ParNet-L)
STREAMS_TARGET = 0.9  # 3 streams + graph over whole + graph
TENSORRT_FP32_RTOL = 1e-3  # TensorRT builds fp32 engines with TF32 convolutions by default


@dataclass
class Row:
    name: str
    arch: str
    precision: str
    run: Callable[[], tuple[float, float]]  # one call -> (gpu ms, wall ms)
    close: Callable[[], None] = lambda: None
    max_rel_err: float = float("nan")
    gpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    stages: list = field(default_factory=list)  # per call, for the streams rows without a graph


def checked_error(name: str, precision: str, logits, reference, tensorrt: bool = False) -> float:
    """The row's max relative error against the unfused fp32 logits; a row beyond its precision's
    tolerance (the CPU comparison's) is refused before anything is timed."""
    from parnet_deploy.bench.compare import RTOL
    from parnet_deploy.compare import compare
    from parnet_deploy.errors import VerificationError

    rtol = TENSORRT_FP32_RTOL if tensorrt and precision == "fp32" else RTOL[precision]
    check = compare(name, {"logits": np.asarray(logits, np.float32)}, {"logits": reference}, rtol)
    if not check.passed:
        raise VerificationError(f"{name} disagrees with the unfused fp32 model:\n{check.report()}")
    return check.outputs[0].max_rel


def direct_row(name, arch, precision, module, x, graph: bool, reference) -> Row:
    """A module called on a device-resident input on its own stream, optionally as a CUDA graph."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the module and input were made on the default stream
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(10):  # cuDNN picks its algorithms; allocations settle
            out = module(x)
    stream.synchronize()
    err = checked_error(name, precision, out.float().cpu().numpy(), reference)
    call: Callable[[], object]
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(g, stream=stream):
            module(x)
        call = g.replay
    else:
        def call():
            with torch.inference_mode():
                return module(x)

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        with torch.cuda.stream(stream):
            start.record(stream)
            call()
            end.record(stream)
        end.synchronize()
        return start.elapsed_time(end), (time.perf_counter() - t0) * 1e3

    return Row(name, arch, precision, run, max_rel_err=err)


def runtime_row(name, arch, precision, directory, image, reference, tensorrt=False, **load) -> Row:
    """An export or engine directory through the runtime; GPU time from its executor's CUDA events."""
    from parnet_deploy import runtime

    runner = runtime.load(directory, **load)
    for _ in range(10):
        out = runner(image)
    row = Row(name, arch, precision, lambda: (0.0, 0.0), runner.close,
              max_rel_err=checked_error(name, precision, out, reference, tensorrt))

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        _, stages = runner.infer_timed(image)
        wall = (time.perf_counter() - t0) * 1e3
        if len(stages) > 1:
            row.stages.append(stages)
        return runner.executor.gpu_time_ms[-1], wall

    row.run = run
    return row


def tensorrt_version() -> str | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt.__version__


def make_rows(arch: str, resolution: int, workdir: Path, log) -> list[Row]:
    import torch

    import parnet_deploy as pd
    from parnet_deploy.export import ExportConfig, export_model
    from parnet_deploy.reparam import reparameterize

    torch.manual_seed(0)
    unfused = pd.create_model(arch).eval()
    image = np.random.default_rng(0).standard_normal((1, 3, resolution, resolution)).astype(np.float32)
    with torch.inference_mode():
        reference = unfused(torch.from_numpy(image)).numpy()
    deploy = reparameterize(copy.deepcopy(unfused))
    rows = []
    for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        x = torch.from_numpy(image).cuda().to(dtype)
        u, d = copy.deepcopy(unfused).cuda().to(dtype), copy.deepcopy(deploy).cuda().to(dtype)
        rows += [direct_row(f"torch unfused {precision}", arch, precision, u, x, False, reference),
                 direct_row(f"torch deploy {precision}", arch, precision, d, x, False, reference),
                 direct_row(f"torch deploy + graph {precision}", arch, precision, d, x, True, reference)]
    log(f"{arch}: exporting (shared stem, {resolution}x{resolution}) ...")
    trt = tensorrt_version() is not None

    def export(precision):
        return export_model(unfused, ExportConfig(output=workdir, name=f"{arch}-{precision}", split="shared",
                                                  resolution=(resolution,) * 2, precision=precision, verify=False),
                            log=lambda _: None)[0]

    fp32 = export("fp32")
    for precision in ("fp32", "fp16"):
        for mode, label in (("whole", "whole"), ("streams", "3 streams")):
            for graph in (False, True):
                rows.append(runtime_row(f"runtime {label}{' + graph' if graph else ''} {precision}", arch, precision,
                                        fp32, image, reference, backend="torch", device="cuda:0",
                                        mode=mode, precision=precision, cuda_graph=graph))
    if trt:
        from parnet_deploy.engines.build import BuildConfig, build_engines

        for precision in ("fp32", "fp16"):
            log(f"{arch}: building TensorRT {precision} engines ...")
            source = fp32 if precision == "fp32" else export("fp16")
            engines, _ = build_engines(source, BuildConfig(backend="tensorrt", devices="0",
                                                                      output=workdir / "engines",
                                                                      timing_cache=workdir / "trt-cache"),
                                       log=lambda _: None)
            for mode, label in (("whole", "whole"), ("streams", "3 streams")):
                for graph in (False, True):
                    rows.append(runtime_row(f"tensorrt {label}{' + graph' if graph else ''} {precision}", arch,
                                            precision, engines, image, reference, tensorrt=True, mode=mode,
                                            cuda_graph=graph))
    return rows


def overlap(calls: list) -> dict | None:
    """Median per-stage CUDA-event times of a streams run, and how much the streams overlapped."""
    if not calls:
        return None
    names = [s.name for s in calls[0]]
    med = {n: (float(np.median([s.start for c in calls for s in c if s.name == n])) * 1e3,
               float(np.median([s.end for c in calls for s in c if s.name == n])) * 1e3) for n in names}
    streams = [n for n in names if n.startswith("stream")]
    busy = sum(med[n][1] - med[n][0] for n in streams)
    span = max(med[n][1] for n in streams) - min(med[n][0] for n in streams)
    return {"stages_ms": {n: {"start": s, "end": e} for n, (s, e) in med.items()},
            "overlap": busy / span if span > 0 else float("nan")}


def summarize(rows: list[Row]) -> list[dict]:
    from parnet_deploy.bench.stats import LatencyStats

    out = []
    for r in rows:
        gpu, wall = LatencyStats.from_seconds(np.asarray(r.gpu_ms) / 1e3), LatencyStats.from_seconds(
            np.asarray(r.wall_ms) / 1e3)
        out.append({"arch": r.arch, "name": r.name, "precision": r.precision, "gpu_ms": gpu.to_dict(),
                    "wall_ms": wall.to_dict(), "calls": gpu.count, "max_rel_err_vs_unfused_fp32": r.max_rel_err,
                    "streams": overlap(r.stages)})
    return out


def targets(rows: list[dict]) -> list[dict]:
    """The issue's two targets, per variant, from GPU medians of this run."""
    out = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        med = {r["name"]: r["gpu_ms"]["median"] for r in rows if r["arch"] == arch}
        if {"torch unfused fp32", "torch deploy + graph fp32"} <= med.keys():
            speedup = med["torch unfused fp32"] / med["torch deploy + graph fp32"]
            out.append({"arch": arch, "what": "deploy + graph vs unfused (fp32), speed-up", "value": speedup,
                        "target": f">= {FUSED_TARGET}" if arch == "parnet_l" else "(ParNet-L only)",
                        "met": speedup >= FUSED_TARGET if arch == "parnet_l" else None})
        for p in ("fp32", "fp16"):
            whole, streams = med.get(f"runtime whole + graph {p}"), med.get(f"runtime 3 streams + graph {p}")
            if whole and streams:
                ratio = streams / whole
                out.append({"arch": arch, "what": f"3 streams + graph / whole + graph ({p})", "value": ratio,
                            "target": f"<= {STREAMS_TARGET}", "met": ratio <= STREAMS_TARGET})
    return out


def markdown(data: dict) -> str:
    env = data["environment"]
    lines = [f"# ParNet Table 3 on {env['gpu']}, batch 1", "",
             f"Command: `{data['command']}` ({data['date']})", "",
             f"GPU: {env['gpu']} (compute capability {env['compute_capability']}, driver {env['driver']}); "
             f"torch {env['torch']} (CUDA {env['cuda']}); TensorRT: {env['tensorrt'] or 'not installed'}; "
             f"host CPU: {env['cpu']}", "",
             "GPU time: CUDA events, first start to last done; wall: host time per call. Medians of all rounds.", "",
             "| variant | row | GPU median ms | GPU p99 ms | wall median ms | vs unfused (same precision) "
             "| max rel err vs unfused fp32 |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        unfused = f"torch unfused {r['precision']}"
        base = next(x for x in data["rows"] if x["arch"] == r["arch"] and x["name"] == unfused)
        speedup = base["gpu_ms"]["median"] / r["gpu_ms"]["median"]
        lines.append(f"| {r['arch']} | {r['name']} | {r['gpu_ms']['median']:.3f} | {r['gpu_ms']['p99']:.3f} "
                     f"| {r['wall_ms']['median']:.3f} | {speedup:.2f}x | {r['max_rel_err_vs_unfused_fp32']:.1e} |")
    lines += ["", "## Targets", "", "| variant | what | value | target | met |", "|---|---|---:|---|---|"]
    for t in data["targets"]:
        met = "n/a" if t["met"] is None else "yes" if t["met"] else "**no**"
        lines.append(f"| {t['arch']} | {t['what']} | {t['value']:.3f} | {t['target']} | {met} |")
    streams = [r for r in data["rows"] if r["streams"]]
    if streams:
        lines += ["", "## Do the streams overlap? (CUDA events per subgraph, runs without a graph)", "",
                  "| variant | row | stage medians ms (start-end from the call's start) | overlap |",
                  "|---|---|---|---:|"]
        for r in streams:
            st = ", ".join(f"{n} {v['start']:.3f}-{v['end']:.3f}" for n, v in r["streams"]["stages_ms"].items())
            lines.append(f"| {r['arch']} | {r['name']} | {st} | {r['streams']['overlap']:.2f} |")
    return "\n".join(lines) + "\n"


def environment() -> dict:
    import torch

    from parnet_deploy.hardware import cpu_model

    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        driver = "unknown"
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}", "driver": driver,
            "torch": torch.__version__, "cuda": torch.version.cuda, "tensorrt": tensorrt_version(),
            "tf32": torch.backends.cudnn.allow_tf32,
            "cpu": cpu_model()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", action="append", choices=["parnet_s", "parnet_m", "parnet_l", "parnet_xl"],
                   help="a variant (repeat for more; default: parnet_l and parnet_s)")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=200, help="calls per row per round")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_table3: needs PyTorch with CUDA", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"gpu_table3: needs a CUDA device; torch {torch.__version__} sees none", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # fp32 rows are IEEE fp32 (the torch backend does the same)
    torch.backends.cuda.matmul.allow_tf32 = False
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gpu_table3-") as tmp:
        for arch in args.arch or ["parnet_l", "parnet_s"]:
            rows += make_rows(arch, args.resolution, Path(tmp), print)
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds} ({len(rows)} rows x {args.iterations} calls)", flush=True)
            for row in rows:
                for _ in range(args.iterations):
                    gpu, wall = row.run()
                    row.gpu_ms.append(gpu)
                    row.wall_ms.append(wall)
        for row in rows:
            row.close()
    summary = summarize(rows)
    env = environment()
    data = {"command": ("python benchmarks/gpu_table3.py " + " ".join(sys.argv[1:])).strip(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "environment": env,
            "resolution": args.resolution, "rows": summary, "targets": targets(summary)}
    from parnet_deploy.hardware import slug

    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.output / f"gpu_table3_{slug(env['gpu'])}"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    text = markdown(data)
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
