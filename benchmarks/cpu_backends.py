"""CPU backends side by side, one interleaved run: ONNX Runtime and OpenVINO, fp32 / bf16 / int8,
whole graph and streams, our deploy-form export against the official fuse, and what
``parnet-build --backend auto`` picks. Checks the targets of the backends issue.

    python benchmarks/cpu_backends.py                    # ParNet-S, 224x224, batch 1, 2 threads

Writes benchmarks/results/<arch>_<res>_cpu_backends.{json,md}. Weights are random (latency
does not depend on them); fp32/bf16 rows are checked against the train form before timing;
int8 accuracy is measured on digits (tests, parnet-eval), not here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import torch

import parnet_deploy as pd
from parnet_deploy.backends import available_backends, get_backend
from parnet_deploy.bench.environment import environment
from parnet_deploy.bench.stats import LatencyStats
from parnet_deploy.bench.timing import TimingConfig, measure_interleaved
from parnet_deploy.compare import compare
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.export import graph as G
from parnet_deploy.export import load_manifest
from parnet_deploy.export.pipeline import ExportConfig, export_model
from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export
from parnet_deploy.runtime import load

RESULTS = Path(__file__).resolve().parent / "results"
RTOL = {"fp32": 1e-4, "bf16": 5e-2}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="parnet_s")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    model = pd.create_model(args.arch)
    res = (args.resolution, args.resolution)
    x = np.random.default_rng(0).standard_normal((1, 3, *res)).astype(np.float32)
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    backends = available_backends("cpu")
    rows: list[tuple[str, str, object]] = []  # (name, precision, runner)

    with tempfile.TemporaryDirectory(prefix="parnet-bench-") as tmp:
        tmp = Path(tmp)
        quiet = lambda _: None  # noqa: E731
        shared, _ = export_model(model, ExportConfig(output=tmp, name="shared", resolution=res, split="shared",
                                                     verify=False), log=quiet)
        manifest = load_manifest(shared)
        official = tmp / "official.onnx"
        onnx.save(G.torch_to_onnx(pd.official_fuse(model), res, 18), official)
        print("exported deploy form and official fuse", flush=True)
        for b in backends:
            rows.append((f"{b} fp32 whole", "fp32", load(shared, backend=b, threads=args.threads)))
            rows.append((f"{b} fp32 whole, official fuse", "fp32",
                         get_backend(b, threads=args.threads).load(official, manifest.whole).infer_array))
            rows.append((f"{b} fp32 streams (shared)", "fp32",
                         load(shared, backend=b, mode="streams", threads=args.threads)))
        if "openvino" in backends:
            rows.append(("openvino bf16 whole", "bf16", load(shared, backend="openvino", precision="bf16",
                                                             threads=args.threads)))
        auto32, m32 = build_engines(shared, BuildConfig(output=tmp / "engines", measure_iterations=20), log=print)
        rows.append((f"auto fp32 engine ({m32.backend.name})", "fp32", load(auto32, threads=args.threads)))

        calib = tmp / "calib.npz"
        np.savez(calib, images=np.random.default_rng(1).standard_normal((32, 3, *res)).astype(np.float32))
        int8, _ = quantize_export(shared, QuantizeConfig(calib=str(calib), max_drop=100.0, output=tmp), log=print)
        for b in backends:
            rows.append((f"{b} int8 whole (s8 Q/DQ)", "int8", load(int8, backend=b, threads=args.threads)))
            rows.append((f"{b} int8 streams (shared)", "int8",
                         load(int8, backend=b, mode="streams", threads=args.threads)))
        auto8, m8 = build_engines(int8, BuildConfig(output=tmp / "engines", measure_iterations=20), log=print)
        rows.append((f"auto int8 engine ({m8.backend.name})", "int8", load(auto8, threads=args.threads)))

        errors = {}
        for name, precision, run in rows:
            out = run(x)
            if precision in RTOL:
                check = compare(name, {"logits": out}, {"logits": reference}, RTOL[precision])
                if not check.passed:
                    print(check.report())
                    return 1
                errors[name] = check.outputs[0].max_rel
        print(f"{len(errors)} fp32/bf16 rows agree with the train form; measuring {len(rows)} rows ...", flush=True)
        timing = TimingConfig(warmup_s=1.0, min_iterations=args.iterations, min_duration_s=args.duration)
        samples = measure_interleaved([lambda r=r: r(x) for _, _, r in rows], timing, args.rounds, print)
        for _, _, run in rows:
            getattr(run, "close", lambda: None)()

    stats = {name: LatencyStats.from_seconds(s) for (name, _, _), s in zip(rows, samples)}
    med = {n: s.median for n, s in stats.items()}
    base = med["onnxruntime fp32 whole"]
    targets = []

    def target(label: str, value: float, limit: float) -> None:
        targets.append({"target": label, "value": round(value, 3), "limit": limit, "met": value <= limit})

    auto32 = f"auto fp32 engine ({m32.backend.name})"
    target(f"auto fp32 ({m32.backend.name}) / onnxruntime fp32 whole", med[auto32] / base, 0.95)
    best8 = min((n for n in med if " int8 " in n and "whole" in n or n.startswith("auto int8")), key=med.get)
    target(f"best int8 ({best8}) / onnxruntime fp32 whole", med[best8] / base, 0.32)
    for b in backends:
        target(f"{b}: deploy form / official fuse", med[f"{b} fp32 whole"] / med[f"{b} fp32 whole, official fuse"], 1.0)
        target(f"{b}: fp32 streams / whole", med[f"{b} fp32 streams (shared)"] / med[f"{b} fp32 whole"], 1.03)
        target(f"{b}: int8 streams / whole", med[f"{b} int8 streams (shared)"] / med[f"{b} int8 whole (s8 Q/DQ)"], 1.03)

    env = environment({"threads": args.threads})
    command = ("python benchmarks/cpu_backends.py " + " ".join(sys.argv[1:])).strip()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    data = {"arch": args.arch, "resolution": list(res), "batch": 1, "command": command, "date": date,
            "environment": env, "auto": {"fp32": [t.__dict__ for t in m32.selection],
                                         "int8": [t.__dict__ for t in m8.selection]},
            "rows": [{"name": n, "precision": pr, "latency_ms": stats[n].to_dict(),
                      "vs_onnxruntime_fp32": med[n] / base,
                      "max_rel_err_vs_train": errors.get(n)} for n, pr, _ in rows],
            "targets": targets}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{args.arch}_{args.resolution}_cpu_backends"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# {args.arch} {res[0]}x{res[1]}, batch 1, CPU backends", "", f"Command: `{command}` ({date})", "",
             f"Machine: {env['cpu']}, {env['cores']} cores, {args.threads} threads; libraries: "
             + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()), "",
             "| | median ms | p99 ms | vs ORT fp32 whole | max rel err vs train |", "|---|---:|---:|---:|---:|"]
    for n, _, _ in rows:
        err = f"{errors[n]:.1e}" if n in errors else "not checked (int8: accuracy on digits)"
        lines.append(f"| {n} | {stats[n].median:.2f} | {stats[n].p99:.2f} | {med[n] / base:.3f} | {err} |")
    lines += ["", "| target | value | limit | met |", "|---|---:|---:|---|"]
    lines += [f"| {t['target']} | {t['value']:.3f} | {t['limit']} | {'yes' if t['met'] else 'NO'} |" for t in targets]
    lines += ["", "All rows measured in one run, interleaved in rounds; ratios are the numbers to quote.", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {stem}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
