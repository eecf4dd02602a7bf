"""``build_engines``: export directory → ``engines/<name>/<device-tag>/`` + ``engines.json``."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import atomic_directory, sha256_file
from ..errors import UserError
from ..export.manifest import FileSpec, load_manifest
from . import devices as dev
from . import placement as pl
from .manifest import ENGINE_SUFFIX, WHOLE, DeviceRecord, EnginesManifest

BACKENDS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class BuildConfig:
    """backend: ``onnxruntime`` | ``tensorrt``; devices: ``cpu`` or GPU indices; placement:
    ``auto`` (measure, then minimise the critical path), ``official`` (stream k on device k)
    or a JSON file; timing_cache: TensorRT timing cache to reuse and update."""

    backend: str = "onnxruntime"
    devices: str | None = None
    placement: str = "auto"
    output: Path = Path("engines")
    timing_cache: Path | None = None
    force: bool = False
    measure_iterations: int = 20
    link: pl.Link = pl.Link()
    precision: str = "export"  # "export": as exported (fp32/fp16); "int8": quantize (needs calib)
    calib: str | None = None  # digits | file.npz | folder
    calib_method: str = "minmax"
    max_drop: float = 1.0  # top-1 points (or % disagreement with fp32 on unlabeled data)
    eval_source: str | None = None  # default: digits -> digits:heldout, otherwise the calib source


def builder(backend: str):
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f".builders.{backend}", __package__)


def measure_costs(directory: Path, manifest, records: list[DeviceRecord], backend: str, iterations: int,
                  log: Callable[[str], None]) -> dict[tuple[str, str], float]:
    """Median latency (ms) of every subgraph engine on every device, run alone."""
    from ..runtime.backends import get_backend

    costs = {}
    for rec in records:
        device = "cpu" if rec.kind == "cpu" else f"cuda:{rec.index}"
        be = get_backend(backend, device=device)
        for spec in manifest.subgraphs:
            runner = be.load(directory / rec.tag / f"{spec.name}{ENGINE_SUFFIX[backend]}", spec)
            feeds = {t.name: np.random.default_rng(0).standard_normal(t.shape).astype(t.dtype) for t in spec.inputs}
            runner.infer(feeds)
            times = []
            for _ in range(iterations):
                t0 = time.perf_counter()
                runner.infer(feeds)
                times.append(time.perf_counter() - t0)
            runner.close()
            costs[(spec.name, rec.tag)] = float(np.median(times) * 1e3)
        log(f"  measured on {rec.tag}: " + ", ".join(f"{s.name} {costs[(s.name, rec.tag)]:.2f} ms"
                                                    for s in manifest.subgraphs))
    return costs


def quantize_subgraphs(export_dir: Path, export, out: Path, config: BuildConfig,
                       log: Callable[[str], None]) -> dict:
    """Q/DQ whole graph (accuracy-gated), then the subgraphs cut from it with the same names."""
    import onnx

    from ..data import load_source
    from ..export.graph import cut, subgraph_plan
    from ..precision.accuracy import evaluate
    from ..precision.int8 import Int8Config, quantize_until_accurate
    from ..runtime.backends.onnxruntime import OnnxRuntimeBackend

    res = tuple(export.resolution)
    mean, std = export.normalization["mean"], export.normalization["std"]
    calib_name = "digits:train" if config.calib == "digits" else config.calib
    eval_name = config.eval_source or ("digits:heldout" if config.calib == "digits" else config.calib)
    calib, heldout = load_source(calib_name, res, mean, std), load_source(eval_name, res, mean, std)
    backend = OnnxRuntimeBackend()
    fp32 = evaluate(backend.load(export_dir / export.whole.file, export.whole).infer_array, heldout)
    labeled = heldout.labels is not None
    last: dict = {}  # the accepted level's measurements, for engines.json

    def accept(path: Path) -> tuple[bool, str]:
        q = evaluate(backend.load(path, export.whole).infer_array, heldout)
        agree = q.agreement(fp32)
        if labeled:
            drop = (fp32.top1 - q.top1) * 100
            summary = f"top-1 {q.top1:.2%} vs fp32 {fp32.top1:.2%} (drop {drop:.2f} points), agreement {agree:.2%}"
        else:
            drop = (1 - agree) * 100
            summary = f"agreement with fp32 {agree:.2%} (unlabeled data)"
        last.update({"top1_fp32": fp32.top1, "top1_int8": q.top1, "agreement": agree, "drop_points": drop})
        return drop <= config.max_drop, summary

    out.mkdir()
    flavor = "tensorrt" if config.backend == "tensorrt" else "onnxruntime"
    cfg = Int8Config(method=config.calib_method, flavor=flavor)
    log(f"quantizing to int8 ({cfg.method} calibration on {calib.name}, {flavor} Q/DQ flavor); "
        f"accuracy on {heldout.name}, max drop {config.max_drop} points")
    level, kept_float, summary = quantize_until_accurate(export_dir / export.whole.file, out / export.whole.file,
                                                         calib, cfg, accept, log)
    whole = onnx.load(out / export.whole.file)
    for name, ins, outs in subgraph_plan(export.split):
        onnx.save(cut(whole, ins, outs, name), out / f"{name}.onnx")
    if kept_float:
        log(f"  kept in float: {', '.join(kept_float)}")
    return {"method": cfg.method, "flavor": flavor, "calibration": calib.name, "evaluation": heldout.name,
            "level": level.name, "kept_float": kept_float, "max_drop": config.max_drop, **last}


def build_engines(export_dir: str | Path, config: BuildConfig = BuildConfig(),
                  log: Callable[[str], None] = print) -> tuple[Path, EnginesManifest]:
    export_dir = Path(export_dir)
    export = load_manifest(export_dir)  # verifies the export's hashes
    impl = builder(config.backend)
    backend_version = impl.version()  # a missing backend fails here, with its install hint
    items = dev.parse_devices(config.devices, config.backend)
    records = dev.discover(items)
    by_item = dict(zip(items, records))
    if config.precision not in ("export", "int8"):
        raise UserError(f"unknown precision {config.precision!r}; use int8, or export to get the export's own")
    int8 = config.precision == "int8"
    if int8 and (config.calib is None or export.precision != "fp32"):
        raise UserError("--precision int8 needs --calib SOURCE and an fp32 export")
    target = config.output / (f"{export.name}-int8" if int8 else export.name)
    options = {"precision": "int8" if int8 else export.precision,
               "timing_cache": str(config.timing_cache) if config.timing_cache else None}
    log(f"building {export.name} with {config.backend} {backend_version} for "
        + ", ".join(f"{r.tag} ({r.describe()})" for r in records))
    with atomic_directory(target, force=config.force) as tmp:
        source_dir = export_dir
        if int8:
            source_dir = tmp / "qdq"
            options["int8"] = quantize_subgraphs(export_dir, export, source_dir, config, log)
        for rec in records:
            (tmp / rec.tag).mkdir()
            for spec in (export.whole, *export.subgraphs):
                t0 = time.perf_counter()
                impl.build(source_dir / spec.file, tmp / rec.tag / f"{spec.name}{ENGINE_SUFFIX[config.backend]}",
                           rec.index, options)
                log(f"  {rec.tag}/{spec.name} ... {time.perf_counter() - t0:.2f} s")
        tags = [r.tag for r in records]
        predicted = None
        if config.placement == "auto":
            costs = measure_costs(tmp, export, records, config.backend, config.measure_iterations, log)
            best = pl.plan(export, tags, costs, config.link)
            assignment, predicted = best.assignment, best.to_dict() | {"costs_ms": {f"{s}@{d}": v for (s, d), v
                                                                                    in costs.items()}}
            log("placement (auto): " + ", ".join(f"{k} -> {v}" for k, v in assignment.items())
                + f"; predicted critical path {' -> '.join(best.critical_path)}: {best.predicted_ms:.2f} ms")
        elif config.placement == "official":
            assignment = pl.official(export, tags)
        else:
            assignment = {k: by_item[v].tag for k, v in pl.from_file(Path(config.placement), export, items).items()}
        assignment = {WHOLE: tags[0]} | assignment
        files = {f"{p.parent.name}/{p.name}": FileSpec(sha256_file(p), p.stat().st_size)
                 for p in sorted(tmp.glob("*/*")) if p.is_file()}
        manifest = EnginesManifest(
            name=export.name, backend={"name": config.backend, "version": backend_version},
            precision=options["precision"], devices={r.tag: r for r in records}, placement=assignment,
            export=export.to_dict(), sources={f: spec.sha256 for f, spec in export.files.items()
                                              if f.endswith(".onnx")} if not int8 else
            {f"qdq/{p.name}": sha256_file(p) for p in sorted(source_dir.glob("*.onnx"))},
            files=files, build_options={k: v for k, v in options.items() if v is not None},
            timing_cache={"file": str(config.timing_cache), "sha256": sha256_file(config.timing_cache)}
            if config.timing_cache and config.timing_cache.is_file() else None,
            predicted=predicted)
        manifest.write(tmp)
    log(f"engines written to {target}/")
    return target, manifest
