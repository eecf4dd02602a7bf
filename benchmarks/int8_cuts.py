"""What the int8 cuts cost OpenVINO's streams, and what two changes bought: one run, three OpenVINO flavors of one
calibration (the same fp32 weights and images):

- ``float moves``: without `rewrite.quantize_before_movement` (ParNet's y1 and y2 cross their cuts as float),
  y0 cut before the Fusion's downsample (the cut plan before ``ParNet.stream_output``);
- ``uint8 moves``: with it (every cut uint8), the same cuts;
- ``now``: with it, y0 cut after the downsample (``ParNet.stream_output``).

    python benchmarks/int8_cuts.py            # ParNet-S 224, batch 1, 2 threads

Measures, pair by pair (`int8_peers.paired_ratio`): streams / whole for each graph, each change's streams
against the graph before it, and the current graph's streams in waves (`chain.waves`: on 2 threads stream0 and
stream1 side by side on one thread each, then stream2 on two) against the same chain one subgraph at a time;
and, with OpenVINO's per-layer counters (``PERF_COUNT``), the layers' time by type in
the whole graph and summed over the five subgraphs (the reorders at the cuts are what the split adds); and what
moving from one compiled model to the next costs: each subgraph's call in the chain against a second call right
after it, at the benchmark's threads and at one thread. The current graph's streams / whole is then paired again
``--repeats`` times, one run after another: the spread between runs.
Writes benchmarks/results/int8_cuts.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from parnet_deploy.backends.openvino.chain import ChainedStreamsExecutor
from parnet_deploy.bench.environment import describe_cpu, environment
from parnet_deploy.export import load_manifest
from parnet_deploy.models import ParNet
from parnet_deploy.precision import rewrite
from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export
from parnet_deploy.runtime import load

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_peers import RESULTS, fp32_export, model_arguments, paired_ratio  # noqa: E402


def _stream_output_before(self, k, x):
    return self.streams[k](x)


def _fusion_before(self, y0, y1, y2):
    d1 = self.downsamples_2[1](y1, self.downsamples_2[0](y0))
    return self.head(self.combine(y2, d1))


def y0_before_downsample():
    """The cut plan before ``ParNet.stream_output``: y0 straight out of stream 0, downsampled in the Fusion."""
    stack = ExitStack()
    stack.enter_context(mock.patch.object(ParNet, "stream_output", _stream_output_before))
    stack.enter_context(mock.patch.object(ParNet, "fusion", _fusion_before))
    return stack


GRAPHS = ("float moves", "uint8 moves", "now")
# (numerator, denominator): each change against the graph before it
CHANGES = (("uint8 moves", "float moves"), ("now", "uint8 moves"))


def wired(export: Path, threads: int, x: np.ndarray, perf_count: bool) -> tuple[Any, list[tuple[str, Any]]]:
    """The whole graph's infer request and the subgraphs' (by name), compiled as the backend compiles int8 and
    wired tensor to tensor as `ChainedStreamsExecutor` wires them."""
    import openvino as ov

    from parnet_deploy.backends.openvino.config import compile_config, precision_hint

    core, manifest = ov.Core(), load_manifest(export)
    config = {**compile_config("CPU", threads, precision_hint("int8", "CPU")),
              "PERF_COUNT": "YES" if perf_count else "NO"}
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
        chain.append((spec.name, request))
    return whole, chain


def layer_ms(export: Path, threads: int, x: np.ndarray, calls: int) -> tuple[dict, dict]:
    """Mean ms per call by layer type, from PERF_COUNT: (the whole graph, the five subgraphs summed), with the
    whole graph and the chain called alternately so that both see the same machine."""
    whole, chain = wired(export, threads, x, perf_count=True)
    ms = {"whole": defaultdict(float), "subgraphs": defaultdict(float)}

    def count(request, into: dict) -> None:
        for p in request.profiling_info:
            if p.status == p.Status.EXECUTED:
                into[p.node_type] += p.real_time.total_seconds() * 1e3 / calls

    for k in range(10 + calls):
        whole.infer()
        for _, request in chain:
            request.infer()
        if k >= 10:
            count(whole, ms["whole"])
            for _, request in chain:
                count(request, ms["subgraphs"])
    return dict(ms["whole"]), dict(ms["subgraphs"])


def switch_ms(export: Path, threads: int, x: np.ndarray, calls: int) -> dict[str, dict[str, float]]:
    """Median ms of each subgraph's call in the chain (just after the previous subgraph's) and of a second call
    right after it: what moving from one compiled model to the next costs, per subgraph."""
    _, chain = wired(export, threads, x, perf_count=False)
    times: dict[str, tuple[list, list]] = {name: ([], []) for name, _ in chain}
    for k in range(10 + calls):
        for name, request in chain:
            for into in times[name]:
                start = time.perf_counter()
                request.infer()
                if k >= 10:
                    into.append(time.perf_counter() - start)
    return {name: {"in_chain": float(np.median(a)) * 1e3, "again": float(np.median(b)) * 1e3}
            for name, (a, b) in times.items()}


def main() -> int:
    p = model_arguments(argparse.ArgumentParser(description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--profile-calls", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5,
                   help="more paired streams / whole runs of the current graph, one after another: the spread of runs")
    args = p.parse_args()
    res, t = (args.resolution, args.resolution), args.threads
    with tempfile.TemporaryDirectory(prefix="parnet-int8-cuts-") as tmp:
        tmp = Path(tmp)
        (tmp / "y0-before").mkdir()
        with y0_before_downsample():
            fp32_before, x, _ = fp32_export(args, tmp / "y0-before")  # the same seeds: the same weights and images
        fp32, _, _ = fp32_export(args, tmp)
        before = QuantizeConfig(calib=str(tmp / "y0-before" / "calib.npz"), max_drop=100.0, output=tmp)
        exports = {}
        with mock.patch.object(rewrite, "quantize_before_movement", lambda model: model):
            exports["float moves"], _ = quantize_export(fp32_before, replace(before, name="float-moves"), log=print)
        exports["uint8 moves"], _ = quantize_export(fp32_before, replace(before, name="uint8-moves"), log=print)
        exports["now"], _ = quantize_export(fp32, replace(before, calib=str(tmp / "calib.npz"), name="now"),
                                            log=print)
        cuts = {g: {t.name: f"{t.dtype} {list(t.shape)}" for s in load_manifest(e).subgraphs for t in s.outputs
                    if t.name not in {o.name for o in load_manifest(e).whole.outputs}} for g, e in exports.items()}
        runners = {g: {m: load(e, backend="openvino", mode=m, threads=t) for m in ("whole", "streams")}
                   for g, e in exports.items()}
        logits = {g: runners[g]["streams"](x) for g in GRAPHS}
        diff = max(float(np.abs(logits[g] - runners[g]["whole"](x)).max()) for g in GRAPHS)
        diff_now = float(np.abs(logits["now"] - logits["uint8 moves"]).max())
        def pair(num: tuple[str, str], den: tuple[str, str]) -> dict:
            """(graph, mode) against (graph, mode), paired."""
            return paired_ratio(lambda: runners[num[0]][num[1]](x), lambda: runners[den[0]][den[1]](x),
                                args.pair_rounds, 5)

        paired = {}
        for g in GRAPHS:
            print(f"paired: streams / whole, {g}, {args.pair_rounds} rounds ...", flush=True)
            paired[f"streams / whole, {g}"] = pair((g, "streams"), (g, "whole"))
        for num, den in CHANGES:
            for m in ("whole", "streams") if num == "uint8 moves" else ("streams",):
                print(f"paired: {m}, {num} / {den} ...", flush=True)
                paired[f"{m}: {num} / {den}"] = pair((num, m), (den, m))
        now = runners["now"]["streams"]
        in_turn = ChainedStreamsExecutor(now.manifest, now._load_runner, 1)  # waves of one: one at a time
        feeds = {now.input_spec.name: x}
        diff_waves = float(np.abs(now.executor.infer(feeds)[now.output_spec.name]
                                  - in_turn.infer(feeds)[now.output_spec.name]).max())
        print("paired: streams, now: waves / one at a time ...", flush=True)
        paired["streams, now: waves / one at a time"] = paired_ratio(lambda: now.executor.infer(feeds),
                                                                     lambda: in_turn.infer(feeds), args.pair_rounds, 5)
        in_turn.close()
        repeats = []
        for k in range(args.repeats):
            print(f"paired: streams / whole, now, repeat {k + 1}/{args.repeats} ...", flush=True)
            repeats.append(pair(("now", "streams"), ("now", "whole")))
        for r in runners.values():
            for runner in r.values():
                runner.close()
        print("per-layer counters ...", flush=True)
        layers = {g: layer_ms(e, t, x, args.profile_calls) for g, e in exports.items()}
        print("moving between compiled models ...", flush=True)
        switch = {n: switch_ms(exports["now"], n, x, args.profile_calls) for n in sorted({t, 1})}

    env = environment({"threads": t})
    command = ("python benchmarks/int8_cuts.py " + " ".join(sys.argv[1:])).strip()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    data = {"arch": args.arch, "resolution": list(res), "batch": 1, "command": command, "date": date,
            "environment": env, "cuts": cuts, "streams_vs_whole_max_abs_diff": diff,
            "now_vs_uint8_moves_max_abs_diff": diff_now, "waves_vs_one_at_a_time_max_abs_diff": diff_waves,
            "waves": [list(w) for w in now.executor.waves], "paired": paired, "streams_whole_now_repeats": repeats,
            "layers_ms": {g: {"whole": w, "subgraphs": s} for g, (w, s) in layers.items()},
            "switch_ms": {f"{n} threads": v for n, v in switch.items()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "int8_cuts.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# OpenVINO int8 streams: what the cuts cost, {args.arch} {res[0]}x{res[1]}, batch 1", "",
             f"Command: `{command}` ({date})", "",
             f"Machine: {describe_cpu(env)}, {env['cores']} cores, {t} threads; libraries: "
             + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()), "",
             "Three OpenVINO flavors of one calibration (random weights, "
             f"{args.calib_images} random-normal images): float moves (without "
             "`rewrite.quantize_before_movement`, y0 cut before the Fusion's downsample), uint8 moves (with it, the "
             "same cuts) and now (with it, y0 cut after the downsample: `ParNet.stream_output`). Cuts (dtype, shape):",
             ""] + [f"- {g}: " + ", ".join(f"{n} {d}" for n, d in c.items()) for g, c in cuts.items()] + [
             "", f"Streams and whole give logits within {diff:.2g} of each other in every graph; now and uint8 "
             f"moves within {diff_now:.2g} (the same quantized values: the downsample moved, not the scales). Streams "
             "run in waves (`chain.waves`): " + ", ".join("{" + ", ".join(w) + "}" for w in now.executor.waves)
             + f", each wave's subgraphs side by side on {t} threads between them; the same chain one subgraph at a "
             f"time (on {t} threads each) gives logits within {diff_waves:.2g}.", "",
             f"Paired ratios ({args.pair_rounds} rounds of 5 calls each, back to back, order swapped every round; "
             "median of the per-round ratios, 95% bootstrap interval):", "",
             "| ratio | numerator ms | denominator ms | paired | 95% interval |", "|---|---:|---:|---:|---|"]
    lines += [f"| {k} | {v['numerator_ms']:.2f} | {v['denominator_ms']:.2f} | {v['ratio']:.3f} | "
              f"{v['ci95'][0]:.3f}–{v['ci95'][1]:.3f} |" for k, v in paired.items()]
    if repeats:
        ratios = [r["ratio"] for r in repeats]
        lines += ["", f"Streams / whole, now, paired again {len(repeats)} times, one run after another (the spread "
                  "between runs, which one run's interval does not cover): "
                  + ", ".join(f"{r['ratio']:.3f} ({r['ci95'][0]:.3f}–{r['ci95'][1]:.3f})" for r in repeats)
                  + f"; median {float(np.median(ratios)):.3f}, {sum(r <= 1.05 for r in ratios)} of {len(ratios)} "
                  "at or under 1.05."]
    types = sorted({k for w, s in layers.values() for k in (*w, *s)}, key=lambda k: -layers["now"][0].get(k, 0))
    lines += ["", f"OpenVINO's per-layer counters (`PERF_COUNT`, mean ms per call over {args.profile_calls} calls; "
              "the subgraphs summed):", "",
              "| layer type | " + " | ".join(f"{g}: {part}" for g in GRAPHS for part in ("whole", "subgraphs")) + " |",
              "|---|" + "---:|" * (2 * len(GRAPHS))]
    lines += [f"| {k} | " + " | ".join(f"{layers[g][i].get(k, 0.0):.3f}" for g in GRAPHS for i in (0, 1)) + " |"
              for k in types]
    lines += ["| total | " + " | ".join(f"{sum(layers[g][i].values()):.3f}" for g in GRAPHS for i in (0, 1)) + " |",
              "", "Moving from one compiled model to the next (now; median ms of each subgraph's call in the chain, "
              f"and of a second call right after it, over {args.profile_calls} chains):", "",
              "| subgraph | " + " | ".join(f"{n} threads: in the chain | again | difference" for n in switch) + " |",
              "|---|" + "---:|---:|---:|" * len(switch)]
    names = list(next(iter(switch.values())))
    for name in [*names, "sum"]:
        cells = []
        for v in switch.values():
            a = sum(v[n]["in_chain"] for n in names) if name == "sum" else v[name]["in_chain"]
            b = sum(v[n]["again"] for n in names) if name == "sum" else v[name]["again"]
            cells.append(f"{a:.3f} | {b:.3f} | {a - b:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    (RESULTS / "int8_cuts.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
