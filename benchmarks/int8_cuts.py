"""What quantizing the moved tensors bought OpenVINO's int8 streams: one run, the OpenVINO flavor with and
without `rewrite.quantize_before_movement` (ParNet's y1 and y2 cross their cuts as uint8 with it, float
without), from the same fp32 graph and calibration images.

    python benchmarks/int8_cuts.py            # ParNet-S 224, batch 1, 2 threads

Measures, pair by pair (`int8_peers.paired_ratio`): streams / whole for each graph, and each mode's two
graphs against each other; and, with OpenVINO's per-layer counters (``PERF_COUNT``), the layers' time by type in
the whole graph and summed over the five subgraphs (the reorders at the cuts are what the split adds).
Writes benchmarks/results/int8_cuts.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import numpy as np

from parnet_deploy.bench.environment import describe_cpu, environment
from parnet_deploy.export import load_manifest
from parnet_deploy.precision import rewrite
from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export
from parnet_deploy.runtime import load

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_peers import RESULTS, fp32_export, model_arguments, paired_ratio  # noqa: E402

GRAPHS = ("before", "now")


def layer_ms(export: Path, threads: int, x: np.ndarray, calls: int) -> tuple[dict, dict]:
    """Mean ms per call by layer type, from PERF_COUNT: (the whole graph, the five subgraphs summed), compiled
    as the backend compiles them, the subgraphs wired tensor to tensor as `ChainedStreamsExecutor` does, and
    called alternately (whole, then the chain) so that both see the same machine."""
    import openvino as ov

    from parnet_deploy.backends.openvino.config import compile_config, precision_hint

    core, manifest = ov.Core(), load_manifest(export)
    config = {**compile_config("CPU", threads, precision_hint("int8", "CPU")), "PERF_COUNT": "YES"}
    whole = core.compile_model(str(export / manifest.whole.file), "CPU", config).create_infer_request()
    tensors = {manifest.whole.inputs[0].name: ov.Tensor(x)}
    whole.set_input_tensor(tensors[manifest.whole.inputs[0].name])
    chain = []
    for spec in manifest.subgraphs:
        compiled = core.compile_model(str(export / spec.file), "CPU", config)
        request = compiled.create_infer_request()
        for port, t in zip(compiled.inputs, spec.inputs, strict=True):  # ONNX order, as the manifest's
            request.set_tensor(port, tensors[t.name])
        for port, t in zip(compiled.outputs, spec.outputs, strict=True):
            tensors[t.name] = ov.Tensor(port.get_element_type(), port.get_shape())
            request.set_tensor(port, tensors[t.name])
        chain.append(request)
    ms = {"whole": defaultdict(float), "subgraphs": defaultdict(float)}

    def count(request, into: dict) -> None:
        for p in request.profiling_info:
            if p.status == p.Status.EXECUTED:
                into[p.node_type] += p.real_time.total_seconds() * 1e3 / calls

    for k in range(10 + calls):
        whole.infer()
        for request in chain:
            request.infer()
        if k >= 10:
            count(whole, ms["whole"])
            for request in chain:
                count(request, ms["subgraphs"])
    return dict(ms["whole"]), dict(ms["subgraphs"])


def main() -> int:
    p = model_arguments(argparse.ArgumentParser(description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--profile-calls", type=int, default=200)
    args = p.parse_args()
    res, t = (args.resolution, args.resolution), args.threads
    with tempfile.TemporaryDirectory(prefix="parnet-int8-cuts-") as tmp:
        tmp = Path(tmp)
        fp32, x, _ = fp32_export(args, tmp)
        config = QuantizeConfig(calib=str(tmp / "calib.npz"), max_drop=100.0, output=tmp)
        exports = {}
        with mock.patch.object(rewrite, "quantize_before_movement", lambda model: model):
            exports["before"], _ = quantize_export(fp32, replace(config, name="before"), log=print)
        exports["now"], _ = quantize_export(fp32, replace(config, name="now"), log=print)
        cuts = {g: {t.name: t.dtype for s in load_manifest(e).subgraphs for t in s.outputs
                    if t.name not in {o.name for o in load_manifest(e).whole.outputs}} for g, e in exports.items()}
        runners = {g: {m: load(e, backend="openvino", mode=m, threads=t) for m in ("whole", "streams")}
                   for g, e in exports.items()}
        diff = float(np.abs(runners["now"]["whole"](x) - runners["before"]["whole"](x)).max())
        paired = {}
        for g in GRAPHS:
            print(f"paired: streams / whole, {g}, {args.pair_rounds} rounds ...", flush=True)
            w, s = runners[g]["whole"], runners[g]["streams"]
            paired[f"streams / whole, {g}"] = paired_ratio(lambda s=s: s(x), lambda w=w: w(x), args.pair_rounds, 5)
        for m in ("whole", "streams"):
            print(f"paired: {m} now / {m} before ...", flush=True)
            paired[f"{m}: now / before"] = paired_ratio(lambda m=m: runners["now"][m](x),
                                                        lambda m=m: runners["before"][m](x), args.pair_rounds, 5)
        for r in runners.values():
            for runner in r.values():
                runner.close()
        print("per-layer counters ...", flush=True)
        layers = {g: layer_ms(e, t, x, args.profile_calls) for g, e in exports.items()}

    env = environment({"threads": t})
    command = ("python benchmarks/int8_cuts.py " + " ".join(sys.argv[1:])).strip()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    data = {"arch": args.arch, "resolution": list(res), "batch": 1, "command": command, "date": date,
            "environment": env, "cuts": cuts, "whole_max_abs_diff": diff, "paired": paired,
            "layers_ms": {g: {"whole": w, "subgraphs": s} for g, (w, s) in layers.items()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "int8_cuts.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# OpenVINO int8 streams: quantized moves, {args.arch} {res[0]}x{res[1]}, batch 1", "",
             f"Command: `{command}` ({date})", "",
             f"Machine: {describe_cpu(env)}, {env['cores']} cores, {t} threads; libraries: "
             + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()), "",
             "The OpenVINO flavor of one calibration (random weights, "
             f"{args.calib_images} random-normal images), with (now) and without (before) "
             "`rewrite.quantize_before_movement`. Cuts: "
             + "; ".join(f"{g}: " + ", ".join(f"{n} {d}" for n, d in c.items()) for g, c in cuts.items())
             + f". Whole graphs' logits differ by at most {diff:.2g}.", "",
             f"Paired ratios ({args.pair_rounds} rounds of 5 calls each, back to back, order swapped every round; "
             "median of the per-round ratios, 95% bootstrap interval):", "",
             "| ratio | numerator ms | denominator ms | paired | 95% interval |", "|---|---:|---:|---:|---|"]
    lines += [f"| {k} | {v['numerator_ms']:.2f} | {v['denominator_ms']:.2f} | {v['ratio']:.3f} | "
              f"{v['ci95'][0]:.3f}–{v['ci95'][1]:.3f} |" for k, v in paired.items()]
    types = sorted({k for w, s in layers.values() for k in (*w, *s)}, key=lambda k: -layers["now"][0].get(k, 0))
    lines += ["", f"OpenVINO's per-layer counters (`PERF_COUNT`, mean ms per call over {args.profile_calls} calls; "
              "the subgraphs summed):", "",
              "| layer type | before: whole | before: subgraphs | now: whole | now: subgraphs |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | " + " | ".join(f"{layers[g][i].get(k, 0.0):.3f}" for g in GRAPHS for i in (0, 1)) + " |"
              for k in types]
    lines += ["| total | " + " | ".join(f"{sum(layers[g][i].values()):.3f}" for g in GRAPHS for i in (0, 1)) + " |",
              ""]
    (RESULTS / "int8_cuts.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
