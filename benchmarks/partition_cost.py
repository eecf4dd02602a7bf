"""Does the partitioner's cost model predict this CPU? Predicted vs measured, per subgraph (issue 20).

    .venv/bin/python benchmarks/partition_cost.py [--quick]

Four multi-branch models, random weights, batch 1: ParNet-S (reparameterized, 224x224),
InceptionV3 (299x299), FractalNet-CIFAR10 (32x32) and DLA-34 (224x224), the last three straight
from pytorchcv's model modules. For each: export to ONNX (opset 18), partition with a cost model
calibrated here on synthetic operators only (``measure_cost_model(threads=2)``, afresh right
before the model is timed, so that a machine whose load drifts hits calibration and measurement
alike), ``devices=3`` (several subgraphs; ``devices=1``'s verdict is recorded too), cut,
then time with ONNX Runtime as the project runs it (2 intra-op threads, sequential execution, no
spinning, full graph optimization): the whole model, every subgraph on its own (fed the tensors
the earlier subgraphs produced), and all subgraphs one after another (the sequential composed
time), interleaved in rounds. Medians. The check: the sum of predicted subgraph times within 25%
of the sum of measured ones (and the predicted whole within 25% of the measured whole).
Writes benchmarks/results/partition_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

import parnet_deploy as pd
from parnet_deploy.backends.onnxruntime.runner import session_options
from parnet_deploy.bench.environment import environment
from parnet_deploy.bench.timing import TimingConfig, measure_interleaved
from parnet_deploy.partition import cut_model, find_partition, measure_cost_model
from parnet_deploy.reparam import reparameterize

OUT = Path(__file__).resolve().parent / "results"
THREADS = 2
TOLERANCE = 0.25


def _parnet_s() -> nn.Module:
    return reparameterize(pd.create_model("parnet_s"))


def _inceptionv3() -> nn.Module:
    from pytorchcv.models.inceptionv3 import inceptionv3

    return inceptionv3(pretrained=False)


def _fractalnet() -> nn.Module:
    from pytorchcv.models.fractalnet_cifar import fractalnet_cifar10

    return fractalnet_cifar10(pretrained=False)


def _dla34() -> nn.Module:
    from pytorchcv.models.dla import dla34

    return dla34(pretrained=False)


MODELS = {"parnet_s": (_parnet_s, 224), "inceptionv3": (_inceptionv3, 299), "fractalnet_cifar10": (_fractalnet, 32),
          "dla34": (_dla34, 224)}


def to_onnx(model: nn.Module, side: int) -> tuple[onnx.ModelProto, np.ndarray]:
    torch.manual_seed(1)
    x = torch.randn(1, 3, side, side)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), f, opset_version=18, dynamo=False, input_names=["x"])
    return onnx.load_from_string(f.getvalue()), x.numpy()


def session(model: onnx.ModelProto):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), session_options(THREADS), providers=["CPUExecutionProvider"])


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def run_model(name: str, timing: TimingConfig, rounds: int) -> dict:
    build, side = MODELS[name]
    setup = time.perf_counter()
    torch.manual_seed(0)
    model, x = to_onnx(build(), side)
    t = time.perf_counter()
    cost = measure_cost_model(threads=THREADS)  # right before this model's timing: a drifting machine hits both
    calibration_s = time.perf_counter() - t
    one = find_partition(model, cost, devices=1)
    p = find_partition(model, cost, devices=3)
    pieces = cut_model(model, p)
    whole = session(model)
    feeds = {p.graph_inputs[0]: x}
    sessions = {n: session(m) for n, m in pieces.items()}
    env = dict(feeds)
    piece_feeds = {}
    for s in p.subgraphs:  # execution order
        sess = sessions[s.name]
        piece_feeds[s.name] = {i.name: env[i.name] for i in sess.get_inputs()}
        env.update(zip((o.name for o in sess.get_outputs()), sess.run(None, piece_feeds[s.name])))

    def composed():
        env = dict(feeds)
        for s in p.subgraphs:
            sess = sessions[s.name]
            env.update(zip((o.name for o in sess.get_outputs()),
                           sess.run(None, {i.name: env[i.name] for i in sess.get_inputs()})))
        return env

    fns = [lambda: whole.run(None, feeds), composed]
    fns += [(lambda sess=sessions[s.name], f=piece_feeds[s.name]: sess.run(None, f)) for s in p.subgraphs]
    t0 = time.perf_counter()
    setup_s = t0 - setup
    samples = measure_interleaved(fns, timing, rounds=rounds)
    measured_s = time.perf_counter() - t0
    whole_ms, composed_ms, *sub_ms = (median_ms(v) for v in samples)
    pred_sub = sum(s.cost_ms for s in p.subgraphs)
    meas_sub = sum(sub_ms)
    return {
        "model": name, "input": [1, 3, side, side], "cost_model": asdict(cost), "calibration_s": calibration_s,
        "operators": sum(len(s.nodes) for s in p.subgraphs),
        "verdict_devices_1": one.verdict, "verdict_devices_3": p.verdict,
        "predicted_whole_ms": p.whole_ms, "measured_whole_ms": whole_ms,
        "whole_ratio": p.whole_ms / whole_ms,
        "predicted_subgraphs_sum_ms": pred_sub, "measured_subgraphs_sum_ms": meas_sub,
        "measured_composed_ms": composed_ms,
        "subgraphs_ratio": pred_sub / meas_sub,
        "within_25pct": abs(pred_sub / meas_sub - 1) <= TOLERANCE,
        "whole_within_25pct": abs(p.whole_ms / whole_ms - 1) <= TOLERANCE,
        "subgraphs": [{"name": s.name, "stream": s.stream, "ops": len(s.nodes), "predicted_ms": s.cost_ms,
                       "measured_ms": m} for s, m in zip(p.subgraphs, sub_ms)],
        "samples": {"whole": len(samples[0]), "composed": len(samples[1])}, "setup_s": setup_s, "timing_s": measured_s,
    }


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# Partition cost model: predicted vs measured ({env['cpu']})", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
             f"CPU: {env['cpu']}, {env['cores']} cores usable; ONNX Runtime {env['libraries'].get('onnxruntime')}, "
             f"{THREADS} intra-op threads, sequential, no spinning  ",
             f"Benchmark runtime: {result['runtime_s']:.0f} s", "",
             "| model | input | ops | subgraphs | predicted whole ms | measured whole ms | whole ratio "
             "| predicted sum of subgraphs ms | measured sum of subgraphs ms | measured composed ms | ratio "
             "| within 25% |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        lines.append(f"| {r['model']} | {r['input'][2]}x{r['input'][3]} | {r['operators']} | {len(r['subgraphs'])} "
                     f"| {r['predicted_whole_ms']:.2f} | {r['measured_whole_ms']:.2f} | {r['whole_ratio']:.2f} "
                     f"| {r['predicted_subgraphs_sum_ms']:.2f} | {r['measured_subgraphs_sum_ms']:.2f} "
                     f"| {r['measured_composed_ms']:.2f} | {r['subgraphs_ratio']:.2f} "
                     f"| {'yes' if r['within_25pct'] else 'NO'} |")
    lines += ["", "Ratio = predicted / measured. The cost model is calibrated on synthetic operators only "
              "(`measure_cost_model(threads=2)`), afresh right before each model is timed:", "",
              "| model | calibration s | launch ms | op ms | GFLOP/s | GB/s | copy GB/s | reduce GB/s | weights GB/s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        c = r["cost_model"]
        lines.append(f"| {r['model']} | {r['calibration_s']:.1f} | {c['launch_ms']:.4f} | {c['op_ms']:.4f} "
                     f"| {c['gflops_per_s']:.1f} | {c['gbytes_per_s']:.1f} | {c['copy_gbytes_per_s']:.1f} "
                     f"| {c['reduce_gbytes_per_s']:.2f} | {c['weights_gbytes_per_s']:.1f} |")
    lines += ["", "Verdicts and per-subgraph figures:", ""]
    for r in result["models"]:
        lines += [f"## {r['model']}", "", f"- devices=1: {r['verdict_devices_1']}",
                  f"- devices=3: {r['verdict_devices_3']}", "",
                  "| subgraph | stream | ops | predicted ms | measured ms | ratio |", "|---|---|---|---|---|---|"]
        for s in r["subgraphs"]:
            lines.append(f"| {s['name']} | {'shared' if s['stream'] is None else s['stream']} | {s['ops']} "
                         f"| {s['predicted_ms']:.3f} | {s['measured_ms']:.3f} "
                         f"| {s['predicted_ms'] / s['measured_ms']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short timing; results written only with --out")
    ap.add_argument("--out", type=Path, default=None, help=f"results folder (default {OUT})")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = ap.parse_args(argv)
    timing = TimingConfig(0.2, 5, 1.0) if args.quick else TimingConfig(0.3, 10, 1.5)
    start = time.perf_counter()
    rows = []
    for name in args.models:
        r = run_model(name, timing, rounds=5)
        print(f"{name} cost model ({r['calibration_s']:.1f} s): {r['cost_model']}", flush=True)
        print(f"{name}: whole {r['predicted_whole_ms']:.2f} pred / {r['measured_whole_ms']:.2f} meas; "
              f"subgraphs {r['predicted_subgraphs_sum_ms']:.2f} pred / {r['measured_subgraphs_sum_ms']:.2f} meas "
              f"(composed {r['measured_composed_ms']:.2f}) ratio {r['subgraphs_ratio']:.2f} "
              f"{'ok' if r['within_25pct'] else 'OFF'}; {len(r['subgraphs'])} subgraphs, setup {r['setup_s']:.0f} s, "
              f"timing {r['timing_s']:.0f} s", flush=True)
        for s in r["subgraphs"]:
            print(f"    {s['name']:10s} {s['ops']:4d} ops  pred {s['predicted_ms']:8.3f}  meas {s['measured_ms']:8.3f}")
        rows.append(r)
    result = {"command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/partition_cost.py",
                                                           *sys.argv[1:]]),
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "environment": environment({"threads": THREADS}), "models": rows,
              "runtime_s": time.perf_counter() - start}
    out = args.out or (None if args.quick else OUT)
    if out is not None:
        out.mkdir(exist_ok=True)
        (out / "partition_cost.json").write_text(json.dumps(result, indent=1) + "\n")
        (out / "partition_cost.md").write_text(markdown(result))
    return 0 if all(r["within_25pct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
