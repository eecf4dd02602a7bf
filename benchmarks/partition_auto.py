"""``--split auto`` never slower than the whole graph on one device; predicted speed-up on three (issue 20).

    .venv/bin/python benchmarks/partition_auto.py [--quick]

The four multi-branch models of ``partition_cost.py`` (built by its builders, random weights,
batch 1): ParNet-S reparameterized 224x224, InceptionV3 299x299, FractalNet-CIFAR10 32x32 and
DLA-34 224x224. For each: export to ONNX (opset 18), measure the cost model on this machine
(``measure_cost_model(threads=2)``, afresh right before the model's exports and timing), then
``export_onnx`` (what ``parnet-export MODEL.onnx --split auto`` runs, verification included)
twice with that cost model: ``devices=1`` and ``devices=3``. The manifests' ``partition`` records
(verdict, streams, subgraphs, predicted whole / critical path / speed-up, launch cost) are kept.

Then, with ONNX Runtime at 2 intra-op threads (``parnet_deploy.runtime.load``), interleaved in
rounds (``measure_interleaved``): the whole graph (mode ``whole``), the ``devices=1`` export in
mode ``streams`` (what a user who split with ``--devices 1`` runs) and the ``devices=3`` export in
mode ``streams``. Medians; ratio = streams median / whole median. The interleaved measurement is
repeated a few times and each repeat's ratio is kept as well, to show how stable the ratio is.
The check: every ``devices=1`` ratio <= 1.02. The ``devices=3`` ratio is measured on this ONE
2-core CPU (its three streams share the two cores): a record, not the predicted speed-up on
three devices, which needs three devices to measure. Streams and whole outputs must agree within
rtol 1e-5 (of the largest magnitude, as the export's verification counts it).
Writes benchmarks/results/partition_auto.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from partition_cost import MODELS, THREADS, median_ms, to_onnx  # noqa: E402  (the same four models, built alike)

from parnet_deploy import runtime  # noqa: E402
from parnet_deploy.bench.environment import environment  # noqa: E402
from parnet_deploy.bench.timing import TimingConfig, measure_interleaved  # noqa: E402
from parnet_deploy.export.onnx_export import OnnxExportConfig, export_onnx  # noqa: E402
from parnet_deploy.partition import measure_cost_model  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
LIMIT = 1.02  # devices=1: streams / whole
RTOL = 1e-5
DEVICES = (1, 3)
CANDIDATES = ("whole", "streams_d1", "streams_d3")


def code_state() -> dict:
    """The commit and the files edited on top of it: the partitioner's verdicts depend on both."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                                  text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "modified": [line[3:] for line in git("status", "--porcelain", "parnet_deploy").splitlines()]}


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def partition_row(manifest) -> dict:
    p = manifest.partition
    return {"devices": p.devices, "streams": p.streams, "subgraphs": len(p.subgraphs), "split": manifest.split,
            "launch_ms": p.launch_ms, "predicted_whole_ms": p.whole_ms,
            "predicted_critical_path_ms": p.critical_path_ms, "predicted_speedup": p.predicted_speedup,
            "verdict": p.verdict, "verification": manifest.verification}


def run_model(name: str, timing: TimingConfig, rounds: int, repeats: int, work: Path) -> dict:
    build, side = MODELS[name]
    setup = time.perf_counter()
    torch.manual_seed(0)
    model, x = to_onnx(build(), side)
    path = work / f"{name}.onnx"
    onnx.save(model, path)
    t = time.perf_counter()
    cost = measure_cost_model(threads=THREADS)  # right before this model's exports and timing
    calibration_s = time.perf_counter() - t
    exports, parts = {}, {}
    for d in DEVICES:
        t = time.perf_counter()
        directory, manifest = export_onnx(path, OnnxExportConfig(output=work / f"d{d}", name=name, devices=d,
                                                                 cost=cost, threads=THREADS), log=lambda _: None)
        exports[d] = directory
        parts[d] = partition_row(manifest) | {"export_s": time.perf_counter() - t}
    runners = {"whole": runtime.load(exports[1], backend="onnxruntime", mode="whole", threads=THREADS),
               "streams_d1": runtime.load(exports[1], backend="onnxruntime", mode="streams", threads=THREADS),
               "streams_d3": runtime.load(exports[3], backend="onnxruntime", mode="streams", threads=THREADS)}
    try:
        outputs = {k: r(x) for k, r in runners.items()}
        agree = {k: max_rel(outputs[k], outputs["whole"]) for k in ("streams_d1", "streams_d3")}
        workers = {k: getattr(runners[k].executor, "workers", None) for k in ("streams_d1", "streams_d3")}
        fns = [lambda r=runners[k]: r(x) for k in CANDIDATES]
        t0 = time.perf_counter()
        setup_s = t0 - setup
        samples: list[list[float]] = [[] for _ in CANDIDATES]
        repeat_ratios = {k: [] for k in ("streams_d1", "streams_d3")}
        for _ in range(repeats):
            got = measure_interleaved(fns, timing, rounds=rounds)
            for i, s in enumerate(got):
                samples[i] += s
            whole = statistics.median(got[0])
            for i, k in enumerate(CANDIDATES[1:], 1):
                repeat_ratios[k].append(statistics.median(got[i]) / whole)
        timing_s = time.perf_counter() - t0
    finally:
        for r in runners.values():
            r.close()
    ms = {k: median_ms(s) for k, s in zip(CANDIDATES, samples)}
    ratio = {k: ms[k] / ms["whole"] for k in ("streams_d1", "streams_d3")}
    return {
        "model": name, "input": [1, 3, side, side], "cost_model": asdict(cost), "calibration_s": calibration_s,
        "partition": {f"devices_{d}": parts[d] for d in DEVICES},
        "measured_ms": ms, "samples": {k: len(s) for k, s in zip(CANDIDATES, samples)},
        "ratio_streams_d1": ratio["streams_d1"], "ratio_streams_d3": ratio["streams_d3"],
        "repeat_ratios": repeat_ratios, "stream_workers": workers,
        "met_d1": ratio["streams_d1"] <= LIMIT,
        "max_rel_vs_whole": agree, "outputs_agree": all(v <= RTOL for v in agree.values()),
        "setup_s": setup_s, "timing_s": timing_s,
    }


def markdown(result: dict) -> str:
    env = result["environment"]
    t = result["timing"]
    lines = [f"# `--split auto`: devices=1 never slower, devices=3 predicted ({env['cpu']})", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
             f"CPU: {env['cpu']}, {env['cores']} cores usable; ONNX Runtime {env['libraries'].get('onnxruntime')}, "
             f"{THREADS} intra-op threads (`parnet_deploy.runtime.load(..., threads={THREADS})`)  ",
             f"Timing: {t['repeats']} x `measure_interleaved` ({t['rounds']} rounds, warm-up {t['warmup_s']} s, "
             f">= {t['min_iterations']} calls and {t['min_duration_s']} s per candidate), medians  ",
             f"Code: commit {result['code']['commit']}"
             + (f" with edits to {', '.join(result['code']['modified'])}" if result["code"]["modified"] else "")
             + "  ",
             f"Benchmark runtime: {result['runtime_s']:.0f} s", "",
             "| model | input | devices=1 verdict | d=1 subgraphs | d=1 streams / whole (repeats) | <= 1.02 "
             "| d=3 streams | d=3 subgraphs | d=3 predicted speed-up | d=3 streams / whole measured on this ONE CPU "
             "| whole ms | outputs agree |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        p1, p3 = r["partition"]["devices_1"], r["partition"]["devices_3"]
        rep1 = ", ".join(f"{v:.3f}" for v in r["repeat_ratios"]["streams_d1"])
        rep3 = ", ".join(f"{v:.2f}" for v in r["repeat_ratios"]["streams_d3"])
        split1 = "split" if p1["split"] == "auto" else "not split"
        lines.append(f"| {r['model']} | {r['input'][2]}x{r['input'][3]} | {split1} "
                     f"| {p1['subgraphs']} | {r['ratio_streams_d1']:.3f} ({rep1}) | {'yes' if r['met_d1'] else 'NO'} "
                     f"| {p3['streams']} | {p3['subgraphs']} | {p3['predicted_speedup']:.2f}x "
                     f"| {r['ratio_streams_d3']:.2f} ({rep3}) | {r['measured_ms']['whole']:.2f} "
                     f"| {'yes' if r['outputs_agree'] else 'NO'} |")
    lines += ["", "Ratio = median of the streams runner / median of the whole-graph runner, timed interleaved; "
              "in brackets each repeat's ratio. The devices=3 column runs that export's streams on this ONE "
              "2-core CPU, only a record: the predicted speed-up is for three devices, and none are available here "
              "(gloo ranks on this machine would be a correctness check, not a measurement).", "",
              "Predictions (from each export's `manifest.partition`) and measured medians:", "",
              "| model | devices | streams | subgraphs | launch ms | predicted whole ms | predicted critical path ms "
              "| predicted speed-up | measured streams ms | measured whole ms | stream workers | max rel vs whole |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        for d in (1, 3):
            p, k = r["partition"][f"devices_{d}"], f"streams_d{d}"
            lines.append(f"| {r['model']} | {d} | {p['streams']} | {p['subgraphs']} | {p['launch_ms']:.4f} "
                         f"| {p['predicted_whole_ms']:.2f} | {p['predicted_critical_path_ms']:.2f} "
                         f"| {p['predicted_speedup']:.2f}x | {r['measured_ms'][k]:.2f} "
                         f"| {r['measured_ms']['whole']:.2f} "
                         f"| {r['stream_workers'][k]} | {r['max_rel_vs_whole'][k]:.1e} |")
    lines += ["", "Verdicts:", ""]
    for r in result["models"]:
        for d in (1, 3):
            lines.append(f"- {r['model']}, devices={d}: {r['partition'][f'devices_{d}']['verdict']}")
    if result.get("reading"):
        lines += ["", "## Reading", "", result["reading"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short timing; results written only with --out")
    ap.add_argument("--out", type=Path, default=None, help=f"results folder (default {OUT})")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=None, help="interleaved measurements per model (default 3, quick 1)")
    args = ap.parse_args(argv)
    # the resolutions stay as they are even with --quick: pytorchcv's heads pool with fixed kernels
    timing = TimingConfig(0.2, 5, 1.0) if args.quick else TimingConfig(1.0, 60, 12.0)
    rounds = 3 if args.quick else 12
    repeats = args.repeats or (1 if args.quick else 3)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="partition-auto-") as tmp:
        for name in args.models:
            r = run_model(name, timing, rounds, repeats, Path(tmp))
            p1, p3 = r["partition"]["devices_1"], r["partition"]["devices_3"]
            print(f"{name}: d=1 {p1['split']} ({p1['subgraphs']} subgraphs) streams/whole {r['ratio_streams_d1']:.3f} "
                  f"{r['repeat_ratios']['streams_d1']} {'ok' if r['met_d1'] else 'OVER'}; d=3 {p3['streams']} streams "
                  f"{p3['subgraphs']} subgraphs predicted {p3['predicted_speedup']:.2f}x, measured on 1 CPU "
                  f"{r['ratio_streams_d3']:.2f}; whole {r['measured_ms']['whole']:.2f} ms; "
                  f"agree {r['max_rel_vs_whole']}; "
                  f"setup {r['setup_s']:.0f} s timing {r['timing_s']:.0f} s", flush=True)
            print(f"    d=1: {p1['verdict']}\n    d=3: {p3['verdict']}", flush=True)
            rows.append(r)
    result = {"command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/partition_auto.py",
                                                           *sys.argv[1:]]),
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "environment": environment({"threads": THREADS}), "code": code_state(),
              "timing": asdict(timing) | {"rounds": rounds, "repeats": repeats},
              "limit_devices_1": LIMIT, "rtol": RTOL, "models": rows, "runtime_s": time.perf_counter() - start}
    out = args.out or (None if args.quick else OUT)
    if out is not None:
        out.mkdir(exist_ok=True)
        (out / "partition_auto.json").write_text(json.dumps(result, indent=1) + "\n")
        (out / "partition_auto.md").write_text(markdown(result))
    return 0 if all(r["met_d1"] and r["outputs_agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
