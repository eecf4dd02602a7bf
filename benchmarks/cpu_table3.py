"""The paper's Table 3 on this CPU, plus the peers: one interleaved run, recorded.

    python benchmarks/cpu_table3.py                      # ParNet-S, 224x224, batch 1
    python benchmarks/cpu_table3.py --arch parnet_m --threads 2

Writes benchmarks/results/<arch>_<res>_cpu.{json,md,png}. Weights are random (latency does
not depend on them); every row's logits are checked against the train form before timing.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402

import parnet_deploy as pd  # noqa: E402
from parnet_deploy.bench.compare import run_compare  # noqa: E402
from parnet_deploy.bench.plot import plot_latency  # noqa: E402
from parnet_deploy.bench.timing import TimingConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="parnet_s")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-peers", action="store_true")
    args = p.parse_args()

    model = pd.create_model(args.arch)
    res = (args.resolution, args.resolution)

    def extra(m, workdir):
        if args.no_peers:
            return []
        return (peers.int8(m, workdir, res, args.threads, print) + peers.openvino(m, workdir, res, args.threads, print)
                + peers.torch_compile(m, print))

    timing = TimingConfig(warmup_s=2.0, min_iterations=args.iterations, min_duration_s=args.duration)
    result = run_compare(model, res, args.threads, timing, extra=extra, rounds=args.rounds)
    table = result.table()
    print(table)

    stem = RESULTS / f"{args.arch}_{args.resolution}_cpu"
    RESULTS.mkdir(exist_ok=True)
    data = result.to_dict()
    series = {r["name"]: r.pop("samples_ms") for r in data["rows"]}
    command = "python benchmarks/cpu_table3.py " + " ".join(sys.argv[1:])
    data |= {"command": command.strip(), "date": datetime.now(UTC).isoformat(timespec="seconds")}
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    plot_latency(series, stem.with_suffix(".png"), f"{args.arch} {args.resolution}x{args.resolution} batch 1")
    rows = {r["name"]: r for r in data["rows"]}
    whole = rows["onnxruntime whole graph"]["latency_ms"]["median"]
    lines = [f"# {args.arch} {args.resolution}x{args.resolution}, batch 1, CPU", "",
             f"Command: `{data['command']}` ({data['date']})", "",
             f"Machine: {data['environment']['cpu']}, {data['environment']['cores']} cores, {args.threads} threads; "
             f"libraries: " + ", ".join(f"{k} {v}" for k, v in data["environment"]["libraries"].items()), "",
             "| | median ms | p99 ms | speed-up vs unfused | streams / whole | max rel err vs train |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        lat = r["latency_ms"]
        ratio = f"{lat['median'] / whole:.3f}" if " streams " in r["name"] else ""
        err = "not checked" if r["precision"] == "int8" else f"{r['max_rel_err_vs_train']:.1e}"
        lines.append(f"| {r['name']} | {lat['median']:.2f} | {lat['p99']:.2f} | {r['speedup_vs_unfused']:.2f}x "
                     f"| {ratio} | {err} |")
    int8 = min((r for n, r in rows.items() if " int8 whole" in n), key=lambda r: r["latency_ms"]["median"],
               default=None)
    bf16 = rows.get("openvino bf16 whole")
    if int8:
        lines += ["", f"fastest int8 ({int8['name']}) / ORT fp32 whole: {int8['latency_ms']['median'] / whole:.3f}"]
        if bf16:
            lines.append(f"int8 / OpenVINO bf16: {int8['latency_ms']['median'] / bf16['latency_ms']['median']:.3f} "
                         f"(target <= 0.75)")
    lines += ["", "All rows measured in one run, interleaved in rounds; ratios are the numbers to quote.",
              "int8 rows: random weights, so not checked numerically here; int8 accuracy is measured on digits "
              "(parnet-eval, and the int8 build's accuracy gate).", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {stem}.json/.md/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
