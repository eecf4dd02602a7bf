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


def build_engines(export_dir: str | Path, config: BuildConfig = BuildConfig(),
                  log: Callable[[str], None] = print) -> tuple[Path, EnginesManifest]:
    export_dir = Path(export_dir)
    export = load_manifest(export_dir)  # verifies the export's hashes
    impl = builder(config.backend)
    backend_version = impl.version()  # a missing backend fails here, with its install hint
    items = dev.parse_devices(config.devices, config.backend)
    records = dev.discover(items)
    by_item = dict(zip(items, records))
    target = config.output / export.name
    options = {"precision": export.precision, "timing_cache": str(config.timing_cache) if config.timing_cache else None}
    log(f"building {export.name} with {config.backend} {backend_version} for "
        + ", ".join(f"{r.tag} ({r.describe()})" for r in records))
    with atomic_directory(target, force=config.force) as tmp:
        for rec in records:
            (tmp / rec.tag).mkdir()
            for spec in (export.whole, *export.subgraphs):
                t0 = time.perf_counter()
                impl.build(export_dir / spec.file, tmp / rec.tag / f"{spec.name}{ENGINE_SUFFIX[config.backend]}",
                           rec.index, options)
                log(f"  {rec.tag}/{spec.name} ... {time.perf_counter() - t0:.2f} s")
        tags = [r.tag for r in records]
        predicted = None
        if config.placement == "auto":
            costs = measure_costs(tmp, export, records, config.backend, config.measure_iterations, log)
            best = pl.plan(export, tags, costs, config.link)
            assignment, predicted = best.assignment, best.to_dict() | {"costs_ms": {f"{s}@{d}": v for (s, d), v
                                                                                    in costs.items()}}
            log(f"placement (auto): " + ", ".join(f"{k} -> {v}" for k, v in assignment.items())
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
            precision=export.precision, devices={r.tag: r for r in records}, placement=assignment,
            export=export.to_dict(), sources={f: spec.sha256 for f, spec in export.files.items()
                                              if f.endswith(".onnx")},
            files=files, build_options={k: v for k, v in options.items() if v is not None},
            timing_cache={"file": str(config.timing_cache), "sha256": sha256_file(config.timing_cache)}
            if config.timing_cache and config.timing_cache.is_file() else None,
            predicted=predicted)
        manifest.write(tmp)
    log(f"engines written to {target}/")
    return target, manifest
