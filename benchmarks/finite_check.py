"""What refusing NaN/inf input costs the Python runtime, in one interleaved run.

    .venv/bin/python benchmarks/finite_check.py

ParNet-S at 224x224 (random weights), whole graph, OpenVINO and ONNX Runtime, all cores: the
same export loaded twice (``check_finite`` True, the default, and False), called alternately;
the median of the paired differences, and the check alone (``np.isfinite(x).all()``) on a
1x3x224x224 image. Writes benchmarks/results/finite_check.{json,md}. (The C library's check:
one pass, measured in the issue-19 note.)
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.bench.environment import environment
from parnet_deploy.export import ExportConfig, export_model

OUT = Path(__file__).resolve().parent / "results"


def paired_us(a, b, x, rounds: int) -> tuple[float, float, float]:
    da, db, diff = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        a(x)
        t1 = time.perf_counter()
        b(x)
        t2 = time.perf_counter()
        da.append(t1 - t0)
        db.append(t2 - t1)
        diff.append((t1 - t0) - (t2 - t1))
    return tuple(float(np.median(v)) * 1e6 for v in (da, db, diff))


def main() -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    scan = []
    for _ in range(2000):
        t = time.perf_counter()
        np.isfinite(x).all()
        scan.append(time.perf_counter() - t)
    rows = {"scan_only_us": float(np.median(scan)) * 1e6}
    with tempfile.TemporaryDirectory() as tmp:
        d, _ = export_model(pd.create_model("parnet_s"), ExportConfig(output=Path(tmp), name="s", verify=False))
        for backend in ("openvino", "onnxruntime"):
            with runtime.load(d, backend=backend) as on, runtime.load(d, backend=backend, check_finite=False) as off:
                for _ in range(5):
                    on(x), off(x)
                with_us, without_us, diff_us = paired_us(on, off, x, 100)
            rows[backend] = {"with_check_us": with_us, "without_check_us": without_us, "median_paired_diff_us": diff_us,
                             "overhead_pct": 100 * diff_us / without_us}
            print(backend, rows[backend], flush=True)
    env = environment({"model": "parnet_s 224 random weights", "mode": "whole", "rounds": 100})
    OUT.mkdir(exist_ok=True)
    (OUT / "finite_check.json").write_text(json.dumps({"environment": env, "results": rows}, indent=2) + "\n")
    lines = [f"# Cost of the finite-input check ({env.get('cpu', '')})", "",
             f"`np.isfinite(x).all()` on 1x3x224x224: {rows['scan_only_us']:.1f} us (median of 2000)", "",
             "| backend | with check (us) | without (us) | median paired diff (us) | overhead |",
             "|---|---|---|---|---|"]
    lines += [f"| {b} | {r['with_check_us']:.0f} | {r['without_check_us']:.0f} | {r['median_paired_diff_us']:.1f} | "
              f"{r['overhead_pct']:.2f}% |" for b, r in rows.items() if isinstance(r, dict)]
    (OUT / "finite_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
