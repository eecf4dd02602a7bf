"""Our int8 against the peers, one interleaved run: NNCF's int8 on OpenVINO from the same fp32 graph and the
same calibration images, our previous placement, fp32; what each graph quantizes (ours, our TensorRT flavor,
NNCF, and NVIDIA ModelOpt's ONNX PTQ when a Python that has it is given); accuracy on digits, ours vs NNCF.

    pip install -e '.[export,peers]'                      # nncf (benchmark only)
    python benchmarks/int8_peers.py                       # ParNet-S 224, batch 1, 2 threads
    python benchmarks/int8_peers.py --modelopt-python /path/to/venv/bin/python   # + ModelOpt's placement

ModelOpt (``nvidia-modelopt``) does not install beside this project (its [onnx] extra pulls onnxruntime-gpu
and CUDA wheels); in a venv of its own with ``--no-deps`` plus CPU onnxruntime it runs on the CPU, calibrating
with ONNX Runtime. Only its graph's structure is compared: TensorRT, which would run it, is not here.
"Previous placement" is the one graph for every engine before the flavors (level 0: Conv/Gemm, Add and Mul inputs,
int8 symmetric activations, 8-bit weights, float cuts), rebuilt here: the speed of the old graph (on CPUs without
VNNI it also computes wrong numbers, see README "Precision").
Writes benchmarks/results/int8_peers.{json,md}. Weights are random for the latency rows (latency does not
depend on them); accuracy uses the digits export (``make demo`` writes export/digits).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import torch

import parnet_deploy as pd
from parnet_deploy.artifacts.files import hash_files
from parnet_deploy.bench.environment import describe_cpu, environment
from parnet_deploy.bench.stats import LatencyStats
from parnet_deploy.bench.timing import TimingConfig, measure_block, measure_interleaved
from parnet_deploy.data import Dataset, load_source
from parnet_deploy.export import load_manifest
from parnet_deploy.export.graph import cut
from parnet_deploy.export.pipeline import ExportConfig, export_model
from parnet_deploy.precision import int8 as int8_module
from parnet_deploy.precision.accuracy import evaluate
from parnet_deploy.precision.int8 import Int8Config, quantize
from parnet_deploy.precision.placement import FLAVORS, Flavor, Level
from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export
from parnet_deploy.runtime import load

RESULTS = Path(__file__).resolve().parent / "results"
PREVIOUS = Level("previous level 0", ("Conv", "Gemm", "Add", "Mul"), float_first_and_last=True)
# the two ratio targets between rows of the table (target, numerator row, denominator row, limit), measured
# again pair by pair: see `paired_ratio`
PAIRS = (("openvino int8: streams / whole, ours", "openvino int8 streams, ours", "openvino int8 whole, ours", 1.05),
         ("onnxruntime int8 whole: ours / previous placement", "onnxruntime int8 whole, ours",
          "onnxruntime int8 whole, previous placement", 1.0))
MODELOPT = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
src, calib, out = sys.argv[1:4]
quantize(onnx_path=src, quantize_mode="int8", calibration_data={"image": np.load(calib)["images"]},
         calibration_method="max", calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=out)
"""


def nncf_quantize(fp32_onnx: Path, images: np.ndarray):
    import nncf
    import openvino as ov

    data = nncf.Dataset([images[i:i + 1] for i in range(len(images))])
    return nncf.quantize(ov.Core().read_model(str(fp32_onnx)), data, preset=nncf.QuantizationPreset.PERFORMANCE,
                         subset_size=len(images))


def compile_ov(model, threads: int, default_hint: bool = False):
    """``model`` compiled as the project's OpenVINO backend compiles an int8 export (`compile_config`), or
    with OpenVINO's default float hint (``default_hint``). The hint matters: left unset, OpenVINO computes
    the float layers in bf16 on CPUs with AVX512-BF16; the backend asks for f32 for ours."""
    import openvino as ov

    from parnet_deploy.backends.openvino.config import compile_config, precision_hint

    config = compile_config("CPU", threads, precision_hint("int8", "CPU"))
    if default_hint:
        del config["INFERENCE_PRECISION_HINT"]
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[0]


def previous_export(fp32_dir: Path, calib: Dataset, out: Path) -> Path:
    """The int8 export as it was before the flavors, as an export directory: one graph, int8 symmetric activations,
    8-bit weights, level-0 placement, float cuts (ONNX Runtime runs it with its exact u8 rewrite, as then)."""
    manifest = load_manifest(fp32_dir)
    out.mkdir()
    before = Flavor("previous", (), "before the flavors", lambda graph, edges: edges, unsigned_activations=False,
                    seven_bit_weights=False, quantized_cuts=False)
    with mock.patch.object(int8_module, "FLAVORS", (*FLAVORS, before)):
        quantize(fp32_dir / manifest.whole.file, out / "unused.onnx", calib, Int8Config(calib_samples=len(calib)),
                 PREVIOUS, flavors={"previous": out / manifest.whole.file})
    (out / "unused.onnx").unlink()
    whole = onnx.load(out / manifest.whole.file)
    for s in manifest.subgraphs:
        onnx.save(cut(whole, [t.name for t in s.inputs], [t.name for t in s.outputs], s.name), out / s.file)
    shutil.copyfile(fp32_dir / manifest.reference, out / manifest.reference)
    replace(manifest, name="previous-int8", precision="int8", torch_weights=None, files=hash_files(out)).write(out)
    return out


def onnx_quantized_inputs(path: Path) -> Counter:
    """Activation inputs read through a DequantizeLinear, by consumer op type (shape-only ops looked through)."""
    g = onnx.load(path).graph
    inits = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    counts: Counter = Counter()
    for n in g.node:
        for t in n.input:
            p = producer.get(t)
            if p is not None and p.op_type == "DequantizeLinear" and p.input[0] not in inits \
                    and not (p.input[0] in producer and producer[p.input[0]].op_type == "QuantizeLinear"
                             and producer[p.input[0]].input[0] in inits):  # ModelOpt: Q/DQ on a float weight
                counts[n.op_type] += 1
    return counts


OV_TO_ONNX = {"Convolution": "Conv", "GroupConvolution": "Conv", "Multiply": "Mul", "ReduceMean": "GlobalAveragePool",
              "MatMul": "Gemm", "BatchNormInference": "BatchNormalization"}


def ov_quantized_inputs(model) -> Counter:
    """FakeQuantize outputs read by each op type (weights' FakeQuantize excluded), ONNX names where they map."""
    counts: Counter = Counter()
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize" or op.input_value(0).get_node().get_type_name() == "Constant":
            continue
        for target in op.output(0).get_target_inputs():
            kind = target.get_node().get_type_name()
            if kind not in ("ShapeOf",):
                counts[OV_TO_ONNX.get(kind, kind)] += 1
    return counts


def digits_accuracy(digits: Path, tmp: Path, threads: int) -> dict:
    """Top-1 on digits:heldout: fp32, ours (OpenVINO and ONNX Runtime, whole and streams), NNCF (OpenVINO)."""
    m = load_manifest(digits)
    norm = m.normalization
    heldout = load_source("digits:heldout", tuple(m.resolution), norm.mean, norm.std)
    calib = load_source("digits:train", tuple(m.resolution), norm.mean, norm.std)
    ours, qm = quantize_export(digits, QuantizeConfig(calib="digits", output=tmp, max_drop=100.0), log=print)
    top1 = {"fp32": evaluate(load(digits, backend="openvino", threads=threads), heldout).top1}
    for backend in ("openvino", "onnxruntime"):
        for mode in ("whole", "streams"):
            with load(ours, backend=backend, mode=mode, threads=threads) as run:
                top1[f"ours {backend} {mode}"] = evaluate(run, heldout).top1
    n = Int8Config().calib_samples  # the images our calibration used: the first 128 of digits:train
    top1["NNCF openvino"] = evaluate(compile_ov(nncf_quantize(digits / m.whole.file, calib.images[:n]), threads),
                                     heldout).top1
    return {"top1": top1, "drop_points": {k: (top1["fp32"] - v) * 100 for k, v in top1.items() if k != "fp32"},
            "level": qm.quantization.level, "calibration_images": n}


def paired_ratio(numerator: Callable[[], object], denominator: Callable[[], object], rounds: int,
                 calls: int) -> dict:
    """numerator / denominator as the median over rounds of the ratio of their block medians (blocks of
    ``calls`` calls, back to back, the order swapped every round), with a 95% bootstrap interval over rounds.

    This machine drifts by several percent within seconds (a VM on a shared host): table rows seconds apart
    gave ratios that moved by 5% between runs. A ratio taken within each round cancels that drift; the
    median over rounds ignores rounds that a burst on the host hit."""
    block = TimingConfig(0.0, calls, 0.0)
    _ = measure_block(numerator, block), measure_block(denominator, block)  # warm-up
    ratios, num_ms, den_ms = [], [], []
    for r in range(rounds):
        if r % 2:
            d = measure_block(denominator, block)
            n = measure_block(numerator, block)
        else:
            n = measure_block(numerator, block)
            d = measure_block(denominator, block)
        ratios.append(float(np.median(n) / np.median(d)))
        num_ms += n
        den_ms += d
    return {**median_ratio(ratios), "rounds": rounds, "calls_per_block": calls,
            "numerator_ms": float(np.median(num_ms)) * 1e3, "denominator_ms": float(np.median(den_ms)) * 1e3}


def median_ratio(ratios: list[float]) -> dict:
    """The median of per-round ratios and its 95% bootstrap interval."""
    boot = np.random.default_rng(0).choice(ratios, (2000, len(ratios)))
    low, high = np.percentile(np.median(boot, axis=1), [2.5, 97.5])
    return {"ratio": float(np.median(ratios)), "ci95": [float(low), float(high)]}


def capi_streams(export: Path, tmp: Path, rounds: int, threads: int) -> dict | None:
    """The C library's streams/whole on ``export`` (benchmarks/capi_streams.cpp), or None without ``make capi``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from capi_overhead import PREFIX, build_tool

    if not (PREFIX / "lib" / "cmake").is_dir():
        print("C library not installed (make capi): its row is skipped", flush=True)
        return None
    exe = build_tool(tmp).parent / "capi_streams"
    print("C library streams/whole ...", flush=True)
    out = json.loads(subprocess.run([str(exe), str(export), str(rounds), "5", str(threads)], capture_output=True,
                                    text=True, check=True).stdout)
    return {**out, **median_ratio(out.pop("ratios")), "rounds": rounds, "calls_per_block": 5}


def model_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The model, threads and calibration options every int8 benchmark here shares (see `fp32_export`)."""
    p.add_argument("--arch", default="parnet_s")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--pair-rounds", type=int, default=150, help="rounds of each paired ratio (paired_ratio)")
    return p


def fp32_export(args: argparse.Namespace, tmp: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The fp32 export of a random-weight ``args.arch`` in ``tmp`` and ``tmp/calib.npz`` (its calibration
    images); returns the export, the timed input and the images. The same seeds in every int8 benchmark."""
    torch.manual_seed(0)
    res = (args.resolution, args.resolution)
    x = np.random.default_rng(0).standard_normal((1, 3, *res)).astype(np.float32)
    images = np.random.default_rng(1).standard_normal((args.calib_images, 3, *res)).astype(np.float32)
    fp32, _ = export_model(pd.create_model(args.arch), ExportConfig(output=tmp, name="fp32", resolution=res,
                                                                    split="shared", verify=False), log=print)
    np.savez(tmp / "calib.npz", images=images)
    return fp32, x, images


def main() -> int:
    p = model_arguments(argparse.ArgumentParser(description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per row per round (at least)")
    p.add_argument("--digits", type=Path, default=Path("export/digits"), help="fp32 digits export (make demo)")
    p.add_argument("--modelopt-python", help="a Python with nvidia-modelopt: adds ModelOpt's placement")
    p.add_argument("--capi-rounds", type=int, default=150, help="rounds of the C library's streams/whole timing "
                   "(make capi first; 0: skip)")
    args = p.parse_args()
    if not (args.digits / "manifest.json").is_file():
        print(f"int8_peers: no digits export at {args.digits}: run make demo first", file=sys.stderr)
        return 2
    res, t = (args.resolution, args.resolution), args.threads
    with tempfile.TemporaryDirectory(prefix="parnet-int8-peers-") as tmp:
        tmp = Path(tmp)
        fp32, x, images = fp32_export(args, tmp)
        ours, manifest = quantize_export(fp32, QuantizeConfig(calib=str(tmp / "calib.npz"), max_drop=100.0,
                                                              output=tmp), log=print)
        previous = previous_export(fp32, Dataset(images, None, "calib.npz"), tmp / "previous")
        print("NNCF ...", flush=True)
        nncf_model = nncf_quantize(fp32 / "model.onnx", images)
        structure = {"ours, OpenVINO flavor": onnx_quantized_inputs(ours / "model.onnx"),
                     "ours, ONNX Runtime flavor": onnx_quantized_inputs(ours / "model.onnxruntime.onnx"),
                     "ours, TensorRT flavor": onnx_quantized_inputs(ours / "model.tensorrt.onnx"),
                     "previous": onnx_quantized_inputs(previous / "model.onnx"),
                     "NNCF (OpenVINO ops)": ov_quantized_inputs(nncf_model)}
        if args.modelopt_python:
            print("ModelOpt ...", flush=True)
            subprocess.run([args.modelopt_python, "-c", MODELOPT, str(fp32 / "model.onnx"), str(tmp / "calib.npz"),
                            str(tmp / "modelopt.onnx")], check=True)
            structure["ModelOpt"] = onnx_quantized_inputs(tmp / "modelopt.onnx")
        rows = {"onnxruntime fp32 whole": load(fp32, backend="onnxruntime", threads=t),
                "openvino fp32 whole": load(fp32, backend="openvino", threads=t),
                "onnxruntime int8 whole, previous placement": load(previous, backend="onnxruntime", threads=t),
                "onnxruntime int8 whole, ours": load(ours, backend="onnxruntime", threads=t),
                "onnxruntime int8 streams, ours": load(ours, backend="onnxruntime", mode="streams", threads=t),
                "openvino int8 whole, previous placement": load(previous, backend="openvino", threads=t),
                "openvino int8 streams, previous placement": load(previous, backend="openvino", mode="streams",
                                                                  threads=t),
                "openvino int8 whole, ours": load(ours, backend="openvino", threads=t),
                "openvino int8 streams, ours": load(ours, backend="openvino", mode="streams", threads=t),
                "openvino int8 whole, NNCF": compile_ov(nncf_model, t),
                "openvino int8 whole, ours, OpenVINO's default float hint": compile_ov(str(ours / "model.onnx"), t,
                                                                                       True),
                "openvino int8 whole, NNCF, OpenVINO's default float hint": compile_ov(nncf_model, t, True)}
        print(f"measuring {len(rows)} rows, {args.rounds} rounds ...", flush=True)
        timing = TimingConfig(warmup_s=1.0, min_iterations=20, min_duration_s=args.duration)
        samples = measure_interleaved([lambda r=r: r(x) for r in rows.values()], timing, args.rounds, print)
        paired = {}
        for target, num, den, _ in PAIRS:
            print(f"paired: {num} / {den}, {args.pair_rounds} rounds ...", flush=True)
            paired[target] = paired_ratio(lambda r=rows[num]: r(x), lambda r=rows[den]: r(x), args.pair_rounds, 5)
        capi = capi_streams(ours, tmp, args.capi_rounds, t) if args.capi_rounds else None
        print("digits accuracy ...", flush=True)
        accuracy = digits_accuracy(args.digits.resolve(), tmp / "digits", t)

    stats = {n: LatencyStats.from_seconds(s) for n, s in zip(rows, samples)}
    med = {n: s.median for n, s in stats.items()}
    drops = accuracy["drop_points"]
    capi_target = [("C library (prt_infer, OpenVINO): int8 streams / whole, ours (paired)", capi["ratio"], 1.05)
                   ] if capi else []
    default = ", OpenVINO's default float hint"
    streams, ort = (paired[target] for target, _, _, _ in PAIRS)
    targets = [*capi_target,
        ("openvino int8 whole: ours / NNCF (both compiled as the backend compiles int8: f32 float math)",
         med["openvino int8 whole, ours"] / med["openvino int8 whole, NNCF"], 0.95),
        ("openvino int8 whole: ours / NNCF, both at OpenVINO's default float hint (bf16 with AVX512-BF16)",
         med[f"openvino int8 whole, ours{default}"] / med[f"openvino int8 whole, NNCF{default}"], 0.95),
        (f"{PAIRS[0][0]} (paired)", streams["ratio"], PAIRS[0][3]),
        ("onnxruntime int8 whole / onnxruntime fp32 whole (the issue's 'today': 0.454)",
         med["onnxruntime int8 whole, ours"] / med["onnxruntime fp32 whole"], 0.454),
        # the same placement and activations as before, 7-bit weights: "no slower" is met when the run cannot
        # tell them apart or shows ours faster (the interval's low end at or under 1)
        (f"{PAIRS[1][0]} (paired; the 95% interval's low end)", ort["ci95"][0], PAIRS[1][3]),
        ("digits top-1 drop (points): ours on onnxruntime (the gate) minus NNCF's",
         drops["ours onnxruntime whole"] - drops["NNCF openvino"], 0.0),
        ("digits top-1 drop (points): ours, worst backend and mode", max(v for k, v in drops.items()
                                                                          if k.startswith("ours")), 1.0)]
    env = environment({"threads": t})
    command = ("python benchmarks/int8_peers.py " + " ".join(sys.argv[1:])).strip()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    data = {"arch": args.arch, "resolution": list(res), "batch": 1, "command": command, "date": date,
            "environment": env, "calibration_images": args.calib_images, "level": manifest.quantization.level,
            "rows": [{"name": n, "latency_ms": stats[n].to_dict(), "vs_openvino_fp32": med[n] / med[
                "openvino fp32 whole"]} for n in rows],
            "paired": paired, "capi": capi,
            "quantized_inputs": {k: dict(sorted(v.items())) for k, v in structure.items()},
            "digits": accuracy,
            "targets": [{"target": a, "value": round(b, 3), "limit": c, "met": b <= c} for a, b, c in targets]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "int8_peers.json").write_text(json.dumps(data, indent=2) + "\n")
    ops = sorted({op for c in structure.values() for op in c})
    lines = [f"# int8 against the peers: {args.arch} {res[0]}x{res[1]}, batch 1", "",
             f"Command: `{command}` ({date})", "",
             f"Machine: {describe_cpu(env)}, {env['cores']} cores, {t} threads; libraries: "
             + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()) + f"; nncf {_version('nncf')}", "",
             f"Random weights, {args.calib_images} random-normal calibration images for every quantizer; our level: "
             f"{manifest.quantization.level}.", "",
             "| | median ms | p99 ms | vs OpenVINO fp32 |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {stats[n].median:.2f} | {stats[n].p99:.2f} | {med[n] / med['openvino fp32 whole']:.3f} |"
              for n in rows]
    lines += ["", f"Paired ratios (each pair alone: {args.pair_rounds} rounds of 5 calls each, back to back; the "
              "median of the per-round ratios, a 95% bootstrap interval, and the table's ratio beside it):", "",
              "| ratio | numerator ms | denominator ms | paired | 95% interval | in the table |",
              "|---|---:|---:|---:|---|---:|"]
    lines += [f"| {target} | {paired[target]['numerator_ms']:.2f} | {paired[target]['denominator_ms']:.2f} | "
              f"{paired[target]['ratio']:.3f} | {paired[target]['ci95'][0]:.3f}–{paired[target]['ci95'][1]:.3f} | "
              f"{med[num] / med[den]:.3f} |" for target, num, den, _ in PAIRS]
    if capi:
        lines += ["", f"C library (`prt_infer`, OpenVINO, {t} threads; the same export, whole and streams opened "
                  f"side by side, paired as above: {capi['rounds']} rounds of {capi['calls_per_block']} calls each): "
                  f"whole {capi['whole_ms']:.2f} ms, streams {capi['streams_ms']:.2f} ms, {capi['ratio']:.3f}x "
                  f"(95% interval {capi['ci95'][0]:.3f}–{capi['ci95'][1]:.3f}); outputs differ by at most "
                  f"{capi['max_abs_diff']:.2g}."]
    lines += ["", "Quantized activation inputs by consumer op type:", "",
              "| | " + " | ".join(ops) + " |", "|---|" + "---:|" * len(ops)]
    lines += [f"| {k} | " + " | ".join(str(v.get(op, 0)) for op in ops) + " |" for k, v in structure.items()]
    lines += ["", f"Digits (held out, {accuracy['calibration_images']} calibration images from digits:train), top-1:",
              "", "| | top-1 | drop (points) |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.2%} | {drops.get(k, 0.0):.2f} |" for k, v in accuracy["top1"].items()]
    lines += ["", "| target | value | limit | met |", "|---|---:|---:|---|"]
    lines += [f"| {t['target']} | {t['value']:.3f} | {t['limit']} | {'yes' if t['met'] else 'NO'} |"
              for t in data["targets"]]
    lines += ["", "All latency rows measured in one run, interleaved in rounds; ratios are the numbers to quote.", ""]
    (RESULTS / "int8_peers.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
