"""Per-call overhead of the C API over the Python runner (target <= 100 us).

    make capi && python benchmarks/capi_overhead.py

A tiny model (so the overhead is visible), 1 thread, the same export; the C program and the
Python loop alternate for several rounds; medians of the per-round means are compared.
Writes benchmarks/results/capi_overhead.{json,md}.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.bench.environment import environment
from parnet_deploy.export import ExportConfig, export_model

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "build" / "capi"
CALLS, ROUNDS = 2000, 7


def main() -> int:
    if not (LIB / "libparnet_rt.so").is_file():
        print("build the library first: make capi", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "capi_overhead"
        subprocess.run(["cc", "-O2", f"-I{ROOT / 'include'}", str(ROOT / "benchmarks" / "capi_overhead.c"), "-o",
                        str(exe), f"-L{LIB}", f"-Wl,-rpath,{LIB}", "-lparnet_rt"], check=True)
        model = pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32))
        d, _ = export_model(model, ExportConfig(output=Path(tmp), name="tiny", verify=False), log=lambda _: None)
        run = runtime.load(d, threads=1)
        x = np.zeros(run.input_spec.shape, np.float32)
        for _ in range(50):
            run(x)
        c_us, inner_us, py_us = [], [], []
        for _ in range(ROUNDS):
            wall, inner = subprocess.run([str(exe), str(d), str(CALLS)], capture_output=True, text=True,
                                         check=True).stdout.split()
            c_us.append(float(wall))
            inner_us.append(float(inner))
            t0 = time.perf_counter()
            for _ in range(CALLS):
                run(x)
            py_us.append((time.perf_counter() - t0) / CALLS * 1e6)
    c, py = float(np.median(c_us)), float(np.median(py_us))
    layer = float(np.median(np.subtract(c_us, inner_us)))
    result = {"c_api_us_per_call": c, "python_runner_us_per_call": py, "c_minus_python_us": c - py,
              "c_layer_us": layer, "target_us": 100,
              "calls_per_round": CALLS, "rounds": ROUNDS, "command": "make capi && python benchmarks/capi_overhead.py",
              "environment": environment()}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "capi_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "capi_overhead.md").write_text(
        f"# C API per-call overhead\n\nCommand: `{result['command']}`\n\n"
        f"Tiny parnet_cifar_s (planes 8,16,32,32), 32x32, 1 thread, {CALLS} calls x {ROUNDS} rounds, medians:\n\n"
        f"| | us per call |\n|---|---:|\n| C API (prt_infer) | {c:.1f} |\n| Python runner | {py:.1f} |\n"
        f"| C API minus Python runner (two processes) | {c - py:.1f} |\n"
        f"| **C layer per call** (C wall minus the runner's own time, same calls) | **{layer:.1f}** "
        f"(target <= 100) |\n\n"
        f"Machine: {result['environment']['cpu']}, {result['environment']['cores']} cores.\n")
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
