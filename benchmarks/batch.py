"""Batch N on the CPU backends, one interleaved run: a dynamic export (batch 1..8) and static
exports (batch 1, 4, 8), ONNX Runtime and OpenVINO, whole graph. Checks the targets of the
batch issue:

  * images/s at batch 8 vs batch 1 (dynamic, and static exports), each backend;
  * per-call latency at batch 4 vs 4 x batch 1 (< 1.0: one call of 4 beats four calls of 1),
    on at least one backend;
  * dynamic vs static at the same batch (1, 4, 8) <= 1.05, each backend. OpenVINO's static
    rows are "one compiled model per batch" (compiled from the static exports); its dynamic rows
    too, since the runner compiles the dynamic ONNX once per batch it is called with
    (results/batch_sweep_bounded_openvino.md: the bounded model, 1.061x static at batch 1).

    python benchmarks/batch.py                 # ParNet-S, 224x224, 2 threads, about 15 minutes

Writes benchmarks/results/batch_sweep.{json,md,png}. Weights are random (latency does not depend
on them); every configuration is checked against the torch deploy form before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

import parnet_deploy as pd
from parnet_deploy.bench.environment import environment
from parnet_deploy.bench.plot import plot_batch_sweep
from parnet_deploy.bench.stats import LatencyStats
from parnet_deploy.export.pipeline import ExportConfig, export_model
from parnet_deploy.runtime import load

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("onnxruntime", "openvino")
DYNAMIC = (1, 8)
DYNAMIC_BATCHES = (1, 2, 4, 8)
STATIC_BATCHES = (1, 4, 8)
QUIET_LOAD = 1.5


def wait_for_quiet(max_wait_s: float) -> tuple[float, float]:
    """(1-minute load before, after waiting up to ``max_wait_s`` for it to drop below QUIET_LOAD)."""
    first = os.getloadavg()[0]
    end = time.time() + max_wait_s
    load_now = first
    while load_now > QUIET_LOAD and time.time() < end:
        print(f"load {load_now:.2f} > {QUIET_LOAD}: waiting for the machine to quieten ...", flush=True)
        time.sleep(15)
        load_now = os.getloadavg()[0]
    return first, load_now


def interleave_calls(fns, warmup_s: float, budget_s: float, min_rounds: int) -> tuple[list[list[float]], int]:
    """Warm each up for ``warmup_s``, then rounds of one call of each, in a new (seeded) random order
    every round, until ``budget_s`` and ``min_rounds`` are both spent: load bursts hit every
    configuration alike, and no configuration always follows the same one (a call after a batch-8
    call finds the caches full of that call's data; a fixed order gave one configuration that
    neighbour every round). Seconds per call, and the number of rounds."""
    for fn in fns:
        fn()
        end = time.perf_counter() + warmup_s
        while time.perf_counter() < end:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    start, rounds = time.perf_counter(), 0
    order = np.random.default_rng(0)
    while rounds < min_rounds or time.perf_counter() - start < budget_s:
        for i in order.permutation(len(fns)):
            t0 = time.perf_counter()
            fns[i]()
            samples[i].append(time.perf_counter() - t0)
        rounds += 1
        if rounds % 25 == 0:
            print(f"round {rounds} ({time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.2f})", flush=True)
    return samples, rounds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="parnet_s")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget", type=float, default=780.0, help="seconds of timed rounds in all")
    p.add_argument("--min-rounds", type=int, default=20)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--wait", type=float, default=300.0, help="seconds to wait for a quiet machine")
    p.add_argument("--exports", type=Path, help="keep (and reuse) the exports in this folder")
    p.add_argument("--out", type=Path, default=RESULTS / "batch_sweep", help="result files' stem")
    args = p.parse_args()
    torch.manual_seed(0)
    model = pd.create_model(args.arch).eval()
    res = (args.resolution, args.resolution)
    images = np.random.default_rng(0).standard_normal((max(DYNAMIC_BATCHES), 3, *res)).astype(np.float32)
    deploy = pd.reparameterize(model)
    with torch.inference_mode():
        reference = deploy(torch.from_numpy(images)).numpy()

    with tempfile.TemporaryDirectory(prefix="parnet-batch-") as tmp:
        root = args.exports or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        exports = {"dynamic": (DYNAMIC, DYNAMIC_BATCHES)}
        exports.update({f"static{b}": ((b, b), (b,)) for b in STATIC_BATCHES})
        dirs = {}
        for name, (bounds, _) in exports.items():
            d = root / f"{args.arch}_{args.resolution}_{name}"
            if not (d / "manifest.json").exists():
                d, _ = export_model(model, ExportConfig(output=root, name=d.name, resolution=res, split="shared",
                                                        verify=False, batch=bounds), log=lambda _: None)
            dirs[name] = d
        print(f"exports in {root}: {', '.join(dirs)}", flush=True)

        configs = []  # (backend, export, batch, runner, input)
        runners = []
        for backend in BACKENDS:
            for name, (_, batches) in exports.items():
                runner = load(dirs[name], backend=backend, threads=args.threads)
                runners.append(runner)
                for b in batches:
                    x = np.ascontiguousarray(images[:b])
                    err = float(np.abs(runner(x) - reference[:b]).max() / np.abs(reference[:b]).max())
                    if err > 1e-3:
                        print(f"{backend} {name} batch {b}: max rel err {err:.1e} vs torch deploy form")
                        return 1
                    configs.append((backend, "dynamic" if name == "dynamic" else "static", b, runner, x))
        print(f"{len(configs)} configurations agree with the torch deploy form", flush=True)

        load_before, load_start = wait_for_quiet(args.wait)
        print(f"load {load_start:.2f}; measuring {len(configs)} configurations: one call of each per round, "
              f"in a random order per round, for {args.budget:g} s ...", flush=True)
        t0 = time.time()
        samples, rounds = interleave_calls([lambda r=r, x=x: r(x) for *_, r, x in configs], args.warmup,
                                           args.budget, args.min_rounds)
        load_end = os.getloadavg()
        wall = time.time() - t0
        for r in runners:
            r.close()

    rows = []
    for (backend, kind, b, _, _), s in zip(configs, samples):
        st = LatencyStats.from_seconds(s)
        rows.append({"backend": backend, "export": kind, "batch": b, "iterations": st.count,
                     "latency_ms": st.to_dict(), "per_image_median_ms": st.median / b,
                     "images_per_s": st.images_per_s(b), "images_per_s_median": b * 1e3 / st.median})
    row = {(r["backend"], r["export"], r["batch"]): r for r in rows}
    med = {k: r["latency_ms"]["median"] for k, r in row.items()}
    fastest = {k: r["latency_ms"]["min"] for k, r in row.items()}
    ratios, targets = [], []

    def ratio(label: str, value, limit: float | None = None, note: str = "") -> None:
        """``value``: a function of a {config: ms} table, taken on the medians (the number) and on the
        fastest calls (a check that load on the machine did not make it)."""
        entry = {"what": label, "value": round(value(med), 3), "from_min": round(value(fastest), 3), "limit": limit,
                 "note": note}
        value = value(med)
        if limit is not None:
            entry["met"] = value <= limit
        ratios.append(entry)

    for backend in BACKENDS:
        for kind in ("dynamic", "static"):
            ratio(f"{backend} {kind}: images/s batch 8 / batch 1",
                  lambda t, b=backend, k=kind: 8 * t[b, k, 1] / t[b, k, 8], note="recorded (> 1: batching wins)")
        for kind in ("dynamic", "static"):
            ratio(f"{backend} {kind}: call at batch 4 / (4 x batch 1)",
                  lambda t, b=backend, k=kind: t[b, k, 4] / (4 * t[b, k, 1]), note="< 1.0 on at least one backend")
        for b in STATIC_BATCHES:
            ratio(f"{backend}: dynamic / static at batch {b}",
                  lambda t, be=backend, n=b: t[be, "dynamic", n] / t[be, "static", n], 1.05)
    call4 = {b: min(med[b, k, 4] / (4 * med[b, k, 1]) for k in ("dynamic", "static")) for b in BACKENDS}
    best = min(call4, key=call4.get)
    targets.append({"target": "call at batch 4 < 4 x batch 1 on at least one backend (best export of each)",
                    "value": round(call4[best], 3), "limit": 1.0, "met": call4[best] < 1.0, "backend": best})
    for backend in BACKENDS:
        worst = max(STATIC_BATCHES, key=lambda b: med[backend, "dynamic", b] / med[backend, "static", b])
        v = med[backend, "dynamic", worst] / med[backend, "static", worst]
        targets.append({"target": f"{backend}: dynamic engine / static engine, worst of batch 1, 4, 8",
                        "value": round(v, 3), "limit": 1.05, "met": v <= 1.05, "batch": worst})

    env = environment({"threads": args.threads})
    command = ("python benchmarks/batch.py " + " ".join(sys.argv[1:])).strip()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    data = {"arch": args.arch, "resolution": list(res), "precision": "fp32", "mode": "whole", "command": command,
            "date": date, "environment": env,
            "load": {"first_seen": load_before, "at_start": load_start, "at_end": list(load_end)},
            "timing": {"warmup_s": args.warmup, "budget_s": args.budget, "rounds": rounds, "wall_s": wall,
                       "scheme": "one call of every configuration per round, in a new seeded random order each round"},
            "rows": rows, "ratios": ratios, "targets": targets}
    stem = args.out
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    series = {f"{r['backend']} {r['export']}": {} for r in rows}
    for r in rows:
        series[f"{r['backend']} {r['export']}"][r["batch"]] = (r["latency_ms"]["median"], r["latency_ms"]["p99"],
                                                               r["images_per_s_median"])
    plot_batch_sweep(series, stem.with_suffix(".png"), f"{args.arch} {res[0]}x{res[1]} fp32, {args.threads} threads")
    stem.with_suffix(".md").write_text(report(data, args))
    print(report(data, args))
    print(f"wrote {stem}.json/.md/.png")
    return 0


def report(data: dict, args) -> str:
    env, ld = data["environment"], data["load"]
    res = data["resolution"]
    lines = [f"# {data['arch']} {res[0]}x{res[1]} fp32, batch N on the CPU backends (whole graph)", "",
             f"Command: `{data['command']}` ({data['date']})", "",
             f"Machine: {env['cpu']}, {env['cores']} cores, {args.threads} threads; libraries: "
             + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()), "",
             f"Load average (1 min): {ld['first_seen']:.2f} when first checked, {ld['at_start']:.2f} at the start "
             f"of timing, {ld['at_end'][0]:.2f} / {ld['at_end'][1]:.2f} (1 / 5 min) at the end.", "",
             f"One run: {len(data['rows'])} configurations, {args.warmup:g} s warm-up each, then "
             f"{data['timing']['rounds']} rounds of one call of every configuration (a new seeded random order each "
             f"round; {data['timing']['wall_s']:.0f} s). Medians; images/s = batch x 1000 / median ms per call.", "",
             "| backend | export | batch | calls | median ms/call | min ms/call | p99 ms/call | cv | ms/image "
             "| images/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        lat = r["latency_ms"]
        lines.append(f"| {r['backend']} | {r['export']} | {r['batch']} | {r['iterations']} | {lat['median']:.1f} | "
                     f"{lat['min']:.1f} | {lat['p99']:.1f} | {lat['cv']:.0%} | {r['per_image_median_ms']:.1f} | "
                     f"{r['images_per_s_median']:.2f} |")
    lines += ["", "| ratio | medians | fastest calls | limit | met (medians) |", "|---|---:|---:|---:|---|"]
    for t in data["ratios"]:
        met = "" if t["limit"] is None else "yes" if t["met"] else "NO"
        lines.append(f"| {t['what']} | {t['value']:.3f} | {t['from_min']:.3f} | {t['limit'] or t['note']} | {met} |")
    lines += ["", "| target | value | limit | met |", "|---|---:|---:|---|"]
    lines += [f"| {t['target']} ({t.get('backend') or 'batch ' + str(t.get('batch'))}) | {t['value']:.3f} | "
              f"{t['limit']} | {'yes' if t['met'] else 'NO'} |" for t in data["targets"]]
    lines += ["", "OpenVINO's static rows are one compiled model per batch (each compiled from its static export); "
              "its dynamic rows too: the runner compiles the dynamic ONNX once per batch it is called with "
              "(batch_sweep_bounded_openvino.md: one model with the bounded batch 1..8, the earlier default).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
