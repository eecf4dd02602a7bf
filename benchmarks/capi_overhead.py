"""The native C library's costs, in one run (targets of the native-runtime issue).

    make capi && .venv/bin/python benchmarks/capi_overhead.py

1. Call overhead: ``prt_infer`` vs OpenVINO's own ``InferRequest::infer()`` on the same
   graph, read and compiled as the library does (from memory; 1 thread, f32, latency), in one
   C++ process, alternating call by call; the median of the paired differences (target <= 5 us).
   On a trivial graph (Flatten of a 1x3x1x1 image: the engine's own time is ~1 us, so the
   wrapper's cost is what is measured), and on the digits export (``make demo``, or an
   untrained model of the same architecture) for context: there two compiled copies of one
   graph differ by several us per call, which the measurement cannot tell from overhead.
2. ``prt_open`` to the first result on the digits export, in a fresh process each time
   (OpenVINO start-up included; target <= 300 ms).
3. Per-call median on ParNet-S 224 (random weights), whole graph, 2 threads: the C library vs
   the Python runtime on the same backend (OpenVINO) and threads, alternating rounds
   (target <= 1.0x).

Writes benchmarks/results/capi_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.bench.environment import environment
from parnet_deploy.export import ExportConfig, export_model
from parnet_deploy.train import DIGITS_PLANES

ROOT = Path(__file__).resolve().parents[1]
PREFIX = ROOT / "build" / "capi" / "install"
COMMAND = "make capi && .venv/bin/python benchmarks/capi_overhead.py"


def build_tool(tmp: Path) -> Path:
    import openvino

    build = tmp / "bench-build"
    subprocess.run(["cmake", "-S", str(ROOT / "benchmarks"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    f"-DCMAKE_PREFIX_PATH={PREFIX}", f"-DOpenVINO_DIR={Path(openvino.__file__).parent / 'cmake'}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    return build / "capi_overhead"


def tool(exe: Path, *args: str) -> str:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, check=True).stdout


def digits_export(tmp: Path) -> tuple[Path, str]:
    if (ROOT / "export" / "digits" / "manifest.json").is_file():
        return ROOT / "export" / "digits", "export/digits (make demo)"
    model = pd.create_model("parnet_cifar_s", planes=DIGITS_PLANES)
    config = ExportConfig(output=tmp, name="digits", split="shared", verify=False)
    d, _ = export_model(model, config, log=lambda _: None)
    return d, "untrained parnet_cifar_s with the digits widths (no export/digits: run make demo)"


def trivial_export(tmp: Path, like: Path) -> Path:
    """An export directory whose whole graph is Flatten(image[1,3,1,1]) -> logits[1,3]."""
    import onnx
    from onnx import TensorProto, helper

    from parnet_deploy.artifacts.files import sha256_file

    d = tmp / "trivial"
    d.mkdir()
    graph = helper.make_graph([helper.make_node("Flatten", ["image"], ["logits"], axis=1)], "trivial",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 1, 1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), d / "model.onnx")
    m = json.loads((like / "manifest.json").read_text())
    spec = {"file": "model.onnx", "inputs": [{"name": "image", "shape": [1, 3, 1, 1], "dtype": "float32"}],
            "outputs": [{"name": "logits", "shape": [1, 3], "dtype": "float32"}], "stream": None}
    m.update(name="trivial", whole={"name": "model", **spec}, subgraphs=[{"name": "all", **spec}], resolution=[1, 1],
             files={"model.onnx": {"sha256": sha256_file(d / "model.onnx"),
                                   "bytes": (d / "model.onnx").stat().st_size}})
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def overhead(exe: Path, d: Path, rounds: int, calls: int) -> dict:
    lines = tool(exe, "overhead", str(d), str(rounds), str(calls)).splitlines()
    rows = [tuple(map(float, line.split())) for line in lines if not line.startswith("checks")]
    return {"prt_infer_us": float(np.median([r[0] for r in rows])),
            "openvino_infer_us": float(np.median([r[1] for r in rows])),
            "overhead_us": float(np.median([r[2] for r in rows])), "rounds": rows,
            "control_us": float(np.median([r[3] for r in rows])),
            "refused_call_us": float(lines[-1].split()[1])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=2000, help="call pairs per round of the overhead measurement")
    p.add_argument("--opens", type=int, default=7, help="fresh processes timing prt_open to first result")
    p.add_argument("--big-calls", type=int, default=30, help="calls per round on ParNet-S 224")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not (PREFIX / "lib" / "libparnet_rt.so").is_file():
        print("build and install the library first: make capi", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="parnet-capi-bench-") as tmp:
        tmp = Path(tmp)
        exe = build_tool(tmp)
        digits, digits_source = digits_export(tmp)
        print(f"digits export: {digits_source}", flush=True)

        trivial = overhead(exe, trivial_export(tmp, digits), args.rounds, args.calls)
        context = overhead(exe, digits, args.rounds, args.calls)
        for name, o in (("trivial graph", trivial), ("digits", context)):
            print(f"call overhead, {name}: prt_infer {o['prt_infer_us']:.2f} us, OpenVINO infer "
                  f"{o['openvino_infer_us']:.2f} us -> {o['overhead_us']:.2f} us (control: a second OpenVINO copy "
                  f"{o['control_us']:+.2f} us)", flush=True)

        open_ms = [float(tool(exe, "open", str(digits))) / 1000 for _ in range(args.opens)]
        print(f"prt_open to first result: median {np.median(open_ms):.1f} ms", flush=True)

        torch.manual_seed(0)
        big, _ = export_model(pd.create_model("parnet_s"), ExportConfig(output=tmp, name="parnet_s_224",
                                                                         resolution=(224, 224), split="shared",
                                                                         verify=False), log=lambda _: None)
        print("exported ParNet-S 224", flush=True)
        c_ms, py_ms = [], []
        with runtime.load(big, backend="openvino", threads=args.threads) as run:
            x = np.full(run.input_spec.shape, 0.5, np.float32)
            for _ in range(5):
                run(x)
            for r in range(args.rounds):
                per_call_us = tool(exe, "percall", str(big), f"threads={args.threads}", str(args.big_calls))
                c_ms.append(float(per_call_us) / 1000)
                times = []
                for _ in range(args.big_calls):
                    t0 = time.perf_counter()
                    run(x)
                    times.append((time.perf_counter() - t0) * 1000)
                py_ms.append(float(np.median(times)))
                print(f"round {r + 1}: C {c_ms[-1]:.2f} ms, Python {py_ms[-1]:.2f} ms", flush=True)

    c, py = float(np.median(c_ms)), float(np.median(py_ms))
    result = {
        "command": COMMAND, "environment": environment({"threads": args.threads}),
        "overhead": {**trivial, "model": "Flatten of a 1x3x1x1 image", "call_pairs_per_round": args.calls,
                     "target_us": 5},
        "overhead_digits": {**context, "model": digits_source, "call_pairs_per_round": args.calls},
        "open_to_first_result_ms": {"median": float(np.median(open_ms)), "runs": open_ms, "model": digits_source,
                                    "target_ms": 300},
        "parnet_s_224": {"c_median_ms": c, "python_median_ms": py, "ratio": c / py, "rounds_c_ms": c_ms,
                         "rounds_python_ms": py_ms, "calls_per_round": args.big_calls, "target_ratio": 1.0},
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "capi_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    env = result["environment"]
    (out / "capi_overhead.md").write_text(
        f"# Native C library (libparnet_rt on OpenVINO {env['libraries'].get('openvino', '?')})\n\n"
        f"Command: `{COMMAND}`  \nMachine: {env['cpu']}, {env['cores']} cores; one run.\n\n"
        f"| measurement | value | target |\n|---|---:|---:|\n"
        f"| call overhead: prt_infer minus OpenVINO's own infer(), same trivial graph (Flatten) compiled the same "
        f"way, 1 thread ({args.rounds} rounds x {args.calls} alternating call pairs; median over rounds of the "
        f"median paired difference) | **{trivial['overhead_us']:.2f} us** (prt_infer {trivial['prt_infer_us']:.2f} "
        f"us, infer() {trivial['openvino_infer_us']:.2f} us; a second OpenVINO copy: {trivial['control_us']:+.2f} us) "
        f"| <= 5 us |\n"
        f"| the same on the digits model (context: compiled copies of it differ by several us, see the control) "
        f"| {context['overhead_us']:.2f} us (prt_infer {context['prt_infer_us']:.1f} us, infer() "
        f"{context['openvino_infer_us']:.1f} us; a second OpenVINO copy: {context['control_us']:+.2f} us) | |\n"
        f"| the library's checks alone: a prt_infer refused for a wrong length (lookup, arguments) "
        f"| {trivial['refused_call_us'] * 1000:.0f} ns | |\n"
        f"| prt_open to first result, fresh process, digits export (median of {args.opens}) "
        f"| **{np.median(open_ms):.0f} ms** (min {min(open_ms):.0f}, max {max(open_ms):.0f}) | <= 300 ms |\n"
        f"| ParNet-S 224 per-call median, whole, {args.threads} threads: C / Python runtime (OpenVINO both) "
        f"| **{c / py:.3f}x** ({c:.2f} ms vs {py:.2f} ms, {args.rounds} alternating rounds) | <= 1.0x |\n\n"
        f"Digits model: {digits_source}.\n")
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
