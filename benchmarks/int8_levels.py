"""Why `precision.placement.LEVELS` is ordered as it is: speed and error of each placement level, one run.

For every level, the whole graph is quantized in the two CPU flavors (OpenVINO's and ONNX Runtime's, one
calibration) and each flavor runs on its engine: ParNet-S 224 with random weights for latency (batch 1,
interleaved rounds, ratios to quote), and the digits export (``make demo``) for the error, as the largest
logit difference to fp32 over digits:heldout relative to the fp32 logits' range, and top-1.

    python benchmarks/int8_levels.py            # writes benchmarks/results/int8_levels.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

import parnet_deploy as pd
from parnet_deploy.backends import get_backend
from parnet_deploy.bench.environment import environment
from parnet_deploy.bench.stats import LatencyStats
from parnet_deploy.bench.timing import TimingConfig, measure_interleaved
from parnet_deploy.data import Dataset, load_source
from parnet_deploy.export import load_manifest
from parnet_deploy.export.pipeline import ExportConfig, export_model
from parnet_deploy.precision.int8 import Int8Config, quantize
from parnet_deploy.precision.placement import LEVELS

RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = ("onnxruntime", "openvino")  # each runs its own flavor


def flavors_of(fp32: Path, out: Path, calib: Dataset, level_index: int) -> dict[str, Path]:
    """Both CPU flavors of ``fp32`` at one level, from one calibration; engine name → file."""
    paths = {"openvino": out / f"level{level_index}.openvino.onnx",
             "onnxruntime": out / f"level{level_index}.onnxruntime.onnx"}
    quantize(fp32, paths["openvino"], calib, Int8Config(calib_samples=len(calib.images)), LEVELS[level_index],
             flavors={"onnxruntime": paths["onnxruntime"]})
    return paths


def runners(fp32: Path, levels: dict[int, dict[str, Path]], spec, threads: int) -> dict[str, object]:
    """``{row name: runner}``: fp32 on each engine, then every level's flavor on its engine."""
    rows = {f"{engine} fp32": get_backend(engine, threads=threads).load(fp32, spec) for engine in ENGINES}
    for i, paths in levels.items():
        for engine in ENGINES:
            rows[f"{engine} level {i}"] = get_backend(engine, threads=threads).load(paths[engine], spec)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per row, all rounds together (at least)")
    p.add_argument("--digits", type=Path, default=Path("export/digits"), help="fp32 digits export (make demo)")
    args = p.parse_args()
    if not (args.digits / "manifest.json").is_file():
        print(f"int8_levels: no digits export at {args.digits}: run make demo first", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    res = (args.resolution, args.resolution)
    t = args.threads
    x = np.random.default_rng(0).standard_normal((1, 3, *res)).astype(np.float32)
    images = np.random.default_rng(1).standard_normal((args.calib_images, 3, *res)).astype(np.float32)
    digits = load_manifest(args.digits)
    norm = digits.normalization
    heldout = load_source("digits:heldout", tuple(digits.resolution), norm.mean, norm.std)
    train = load_source("digits:train", tuple(digits.resolution), norm.mean, norm.std)
    train = Dataset(train.images[:Int8Config().calib_samples], None, "digits:train")
    with tempfile.TemporaryDirectory(prefix="parnet-int8-levels-") as tmp:
        tmp = Path(tmp)
        fp32_dir, manifest = export_model(pd.create_model("parnet_s"), ExportConfig(
            output=tmp, name="fp32", resolution=res, split="shared", verify=False), log=print)
        fp32 = fp32_dir / manifest.whole.file
        calib = Dataset(images, None, "random normal")
        levels, digit_levels = {}, {}
        for i, level in enumerate(LEVELS):
            print(f"level {i}: {level.name} ...", flush=True)
            levels[i] = flavors_of(fp32, tmp, calib, i)
            (tmp / "digits").mkdir(exist_ok=True)
            digit_levels[i] = flavors_of(args.digits / digits.whole.file, tmp / "digits", train, i)
        rows = runners(fp32, levels, manifest.whole, t)
        print(f"measuring {len(rows)} rows, {args.rounds} rounds ...", flush=True)
        samples = measure_interleaved([lambda r=r: r.infer_array(x) for r in rows.values()],
                                      TimingConfig(warmup_s=1.0, min_iterations=20, min_duration_s=args.duration),
                                      args.rounds, print)
        print("digits error ...", flush=True)
        error = {}
        for engine in ENGINES:
            ref_runner = get_backend(engine, threads=t).load(args.digits / digits.whole.file, digits.whole)
            ref = np.concatenate([ref_runner.infer_array(np.ascontiguousarray(b)) for b in heldout.batches(1)])
            for i, paths in digit_levels.items():
                run = get_backend(engine, threads=t).load(paths[engine], digits.whole)
                out = np.concatenate([run.infer_array(np.ascontiguousarray(b)) for b in heldout.batches(1)])
                error[f"{engine} level {i}"] = {
                    "max_rel_error": float(np.abs(out - ref).max() / (ref.max() - ref.min())),
                    "top1": float((out.argmax(1) == heldout.labels).mean()),
                    "fp32_top1": float((ref.argmax(1) == heldout.labels).mean())}

    med = {n: float(np.median(s)) * 1e3 for n, s in zip(rows, samples)}
    stats = {n: LatencyStats.from_seconds(s) for n, s in zip(rows, samples)}
    env = environment({"threads": t})
    command = ("python benchmarks/int8_levels.py " + " ".join(sys.argv[1:])).strip()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    data = {"resolution": list(res), "batch": 1, "command": command, "date": date, "environment": env,
            "levels": [level.name for level in LEVELS],
            "rows": [{"name": n, "latency_ms": stats[n].to_dict()} for n in rows], "digits": error}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "int8_levels.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# int8 placement levels: parnet_s {res[0]}x{res[1]}, batch 1", "", f"Command: `{command}` ({date})", "",
             f"Machine: {env['cpu']}, {env['cores']} cores, {t} threads; libraries: "
             + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()), "",
             f"Latency: random weights, {args.calib_images} random-normal calibration images. Error: the digits "
             f"export, calibrated on the first {len(train.images)} digits:train images, judged on digits:heldout "
             f"({len(heldout.images)} images); error = max |int8 - fp32| logit / fp32 logits' range.", "",
             "| level | placement | engine | median ms | vs its fp32 | max rel. error | top-1 (fp32) |",
             "|---:|---|---|---:|---:|---:|---|"]
    for engine in ENGINES:
        lines.append(f"| fp32 | | {engine} | {med[f'{engine} fp32']:.2f} | 1.000 | | |")
    for i, level in enumerate(LEVELS):
        for engine in ENGINES:
            name, e = f"{engine} level {i}", error[f"{engine} level {i}"]
            lines.append(f"| {i} | {level.name} | {engine} | {med[name]:.2f} | {med[name] / med[f'{engine} fp32']:.3f} "
                         f"| {e['max_rel_error']:.3f} | {e['top1']:.2%} ({e['fp32_top1']:.2%}) |")
    lines += ["", "All latency rows measured in one run, interleaved in rounds; ratios are the numbers to quote.", ""]
    (RESULTS / "int8_levels.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
