"""``build_engines``: export directory → ``engines/<name>/<device-tag>/`` + ``engines.json``.

Any registered backend builds through the same :class:`Backend` interface. ``--backend auto``
builds with every CPU backend installed here, measures each on the whole graph, and keeps
the fastest. Reduced precisions are accuracy-gated on the backend that will run them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..artifacts.engines_manifest import WHOLE, BackendRecord, BuildOptions, DeviceRecord, EnginesManifest, Trial
from ..artifacts.export_manifest import ExportManifest, load_manifest
from ..artifacts.files import atomic_directory, check_target, hash_files
from ..backends import ENGINE_BACKENDS, available_backends, backend_class, get_backend
from ..data.sources import evaluation_source
from ..errors import UserError
from ..hardware import native_bf16
from . import placement as pl
from .gate import AccuracyGate, gate_accuracy
from .measure import median_ms, median_ms_interleaved

PRECISIONS = ("export", "bf16", "int8")  # export: the export's own (fp32 / fp16 / int8 Q/DQ)


@dataclass(frozen=True)
class BuildConfig:
    """backend: a registered backend, or ``auto`` (every CPU backend here, keep the fastest);
    devices: ``cpu`` or GPU indices; placement: ``auto`` (measure, then minimise the critical
    path), ``official`` (stream k on device k) or a JSON file; precision: ``export``, ``bf16``
    (OpenVINO's inference-precision hint, native-bf16 CPUs only) or ``int8`` (an int8 export,
    or an fp32 one quantized here with ``calib``); timing_cache: a folder of TensorRT caches."""

    backend: str = "auto"
    devices: str | None = None
    placement: str = "auto"
    output: Path = Path("engines")
    timing_cache: Path | None = None
    force: bool = False
    measure_iterations: int = 40
    link: pl.Link = pl.Link()
    precision: str = "export"
    calib: str | None = None  # digits | file.npz | folder
    calib_method: str = "minmax"
    max_drop: float = 1.0  # top-1 points (or % disagreement with fp32 on unlabeled data)
    eval_source: str | None = None  # default: digits -> digits:heldout, otherwise the calib source
    workspace_mib: int = 2048
    batch_opt: int | None = None  # a dynamic-batch export's TensorRT profile opt (default: the max)

    def validate(self) -> None:
        if self.backend != "auto" and self.backend not in ENGINE_BACKENDS:
            raise UserError(f"unknown backend {self.backend!r}; choose auto or one of {', '.join(ENGINE_BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not (0 <= self.max_drop <= 100):
            raise UserError(f"--max-drop must be between 0 and 100 points, got {self.max_drop}")
        if self.measure_iterations < 1:
            raise UserError("measure_iterations must be >= 1")
        one_device = self.devices is None or len([t for t in self.devices.split(",") if t.strip()]) == 1
        if self.placement not in ("auto", "official") and one_device:
            raise UserError(f"--placement {self.placement}: a placement file needs several --devices (e.g. 0,1,2); "
                            f"on one device every subgraph runs there")

    @property
    def eval_name(self) -> str | None:
        return evaluation_source(self.calib, self.eval_source)


def parse_devices(text: str | None, kinds: tuple[str, ...]) -> list[str]:
    """``--devices``: ``cpu`` or a comma list of CUDA indices (``0,1,2``)."""
    if text is None:
        return ["cpu"] if "cpu" in kinds else ["0"]
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items or not all(t == "cpu" or t.isdigit() for t in items) or len(set(items)) != len(items):
        raise UserError(f"--devices: expected 'cpu' or distinct GPU indices like 0,1,2, got {text!r}")
    if "cpu" in items and "cpu" not in kinds:
        raise UserError("--devices: this backend builds for GPUs only")
    if any(t != "cpu" for t in items) and "cuda" not in kinds:
        raise UserError("--devices: this backend builds for the CPU only")
    return items


def discover(backend: str, items: list[str]) -> list[DeviceRecord]:
    cls = backend_class(backend)
    records = []
    for item in items:
        rec = cls.device(item)
        if rec is None:
            raise UserError(f"--devices: no device {item!r} here for {backend}")
        records.append(rec)
    return records


def engine_precision(export: ExportManifest, config: BuildConfig) -> str:
    return export.precision if config.precision in ("export", "int8") else config.precision


def candidates(config: BuildConfig, precision: str) -> list[str]:
    if config.backend != "auto":
        names = [config.backend]
    else:
        names = [n for n in available_backends("cpu") if precision in backend_class(n).precisions]
        if not names:
            raise UserError(f"--backend auto: no CPU backend installed here builds {precision}")
    for n in names:
        backend_class(n).check_precision(precision)
    if precision == "bf16" and not native_bf16():
        raise UserError("bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); this one would emulate it, slowly")
    return names


def build_one(backend: str, source_dir: Path, export: ExportManifest, records: list[DeviceRecord], out: Path,
              options: BuildOptions, log: Callable[[str], None]) -> dict[str, dict[str, str]]:
    """Engines for every subgraph and the whole graph on every device; returns tag → subgraph → file."""
    cls = backend_class(backend)
    engines: dict[str, dict[str, str]] = {}
    for rec in records:
        (out / rec.tag).mkdir()
        engines[rec.tag] = {}
        for spec in (export.whole, *export.subgraphs):
            t0 = time.perf_counter()
            file = f"{spec.name}{cls.engine_suffix}"
            cls.build(source_dir / spec.file, out / rec.tag / file, rec, options)
            engines[rec.tag][spec.name] = file
            log(f"  {backend} {rec.tag}/{file} ... {time.perf_counter() - t0:.2f} s")
    return engines


def choose_backend(names: list[str], source_dir: Path, export: ExportManifest, options: BuildOptions,
                   iterations: int, log: Callable[[str], None]) -> tuple[str, tuple[Trial, ...]]:
    """Build the whole graph with every candidate, measure it, keep the fastest."""
    if len(names) == 1:
        return names[0], ()
    cpu = backend_class(names[0]).device("cpu")
    loaded = []
    with tempfile.TemporaryDirectory(prefix="parnet-auto-") as tmp, contextlib.ExitStack() as runners:
        for name in names:
            cls = backend_class(name)
            engine = Path(tmp) / f"{name}{cls.engine_suffix}"
            whole = export.for_backend(name).whole
            cls.build(source_dir / whole.file, engine, cpu, options)
            loaded.append(runners.enter_context(get_backend(name, precision=options.precision).load(engine, whole)))
        times = dict(zip(names, median_ms_interleaved(loaded, iterations)))
    best = min(times, key=times.get)
    log(f"--backend auto ({options.precision}, whole graph, median of {iterations} calls each, interleaved): "
        + ", ".join(f"{n} {t:.2f} ms" for n, t in times.items()) + f" -> {best}")
    return best, tuple(Trial(n, options.precision, t, n == best) for n, t in times.items())


def choose_placement(config: BuildConfig, export: ExportManifest, backend: str, tmp: Path,
                     engines: dict[str, dict[str, str]], records: list[DeviceRecord], items: list[str],
                     log: Callable[[str], None]) -> tuple[dict[str, str], pl.Placement | None]:
    tags = [r.tag for r in records]
    predicted = None
    if len(tags) == 1:
        assignment = {s.name: tags[0] for s in export.subgraphs}
    elif config.placement == "auto":
        costs = {}
        for rec in records:
            device = "cpu" if rec.kind == "cpu" else f"cuda:{rec.index}"
            be = get_backend(backend, device=device, precision=engine_precision(export, config))
            for spec in export.subgraphs:
                with be.load(tmp / rec.tag / engines[rec.tag][spec.name], spec) as runner:
                    costs[(spec.name, rec.tag)] = median_ms(runner, config.measure_iterations)
            log(f"  measured on {rec.tag}: " + ", ".join(f"{s.name} {costs[(s.name, rec.tag)]:.2f} ms"
                                                        for s in export.subgraphs))
        best = pl.plan(export, tags, costs, config.link)
        assignment = best.assignment
        predicted = dataclasses.replace(best, costs_ms={f"{s}@{d}": v for (s, d), v in costs.items()})
        log("placement (auto): " + ", ".join(f"{k} -> {v}" for k, v in assignment.items())
            + f"; predicted critical path {' -> '.join(best.critical_path)}: {best.predicted_ms:.2f} ms")
    elif config.placement == "official":
        assignment = pl.official(export, tags)
    else:
        by_item = dict(zip(items, tags))
        assignment = {k: by_item[v] for k, v in pl.from_file(Path(config.placement), export, items).items()}
    return {WHOLE: tags[0]} | assignment, predicted


def batch_profile(export: ExportManifest, opt: int | None) -> tuple[int, int, int] | None:
    """``(min, opt, max)`` of a dynamic-batch export (``--batch-opt``, default the max); None when static."""
    dim = export.batch
    if dim is None:
        if opt is not None:
            raise UserError(f"--batch-opt applies to dynamic-batch exports; {export.name} has static shapes")
        return None
    if opt is not None and opt not in dim:
        raise UserError(f"--batch-opt {opt} is outside the export's batch bounds {dim}")
    return (dim.min, dim.max if opt is None else opt, dim.max)


def build_engines(export_dir: str | Path, config: BuildConfig = BuildConfig(),
                  log: Callable[[str], None] = print) -> tuple[Path, EnginesManifest]:
    config.validate()
    export_dir = Path(export_dir)
    export = load_manifest(export_dir)  # verifies the export's sizes and hashes
    quantize = config.precision == "int8" and export.precision != "int8"
    if quantize and (config.calib is None or export.precision != "fp32"):
        raise UserError("--precision int8 needs an int8 export (parnet-quantize), or an fp32 export and --calib SOURCE")
    if config.precision == "bf16" and export.precision != "fp32":
        raise UserError(f"--precision bf16 runs an fp32 export in bf16; {export_dir} is {export.precision}")
    if config.precision == "bf16" and config.eval_name is None:
        raise UserError("--precision bf16 is accuracy-gated: give a data set with --eval SOURCE (e.g. digits; labeled: "
                        "top-1 drop, unlabeled: disagreement with fp32)")
    suffix = {"export": "", "bf16": "-bf16", "int8": "" if export.precision == "int8" else "-int8"}[config.precision]
    target = config.output / f"{export.name}{suffix}"
    check_target(target, config.force, "engines.json", export_dir)
    if config.calib is not None and not quantize:
        raise UserError("--calib only applies with --precision int8 on an fp32 export")
    if config.eval_source is not None and config.precision == "export" and export.precision != "int8":
        raise UserError(f"--eval only applies to reduced precisions (--precision bf16 or int8, or an int8 export); "
                        f"{export_dir} is {export.precision}")

    with tempfile.TemporaryDirectory(prefix="parnet-build-") as scratch, \
            atomic_directory(target, force=config.force, marker="engines.json", source=export_dir) as tmp:
        names = candidates(config, "int8" if quantize else engine_precision(export, config))
        for name in names:
            backend_class(name).version()  # a missing library fails now, with its install hint
        source_dir, source = export_dir, export
        if quantize:
            from ..precision.quantize import QuantizeConfig, quantize_export

            source_dir, source = quantize_export(export_dir, QuantizeConfig(
                calib=config.calib, method=config.calib_method, max_drop=config.max_drop,
                eval_source=config.eval_source, output=Path(scratch)), log=log)
        precision = engine_precision(source, config)
        options = BuildOptions(precision=precision, workspace_mib=config.workspace_mib,
                               timing_cache=str(config.timing_cache) if config.timing_cache else None,
                               profile=batch_profile(source, config.batch_opt))
        backend, trials = choose_backend(names, source_dir, source, options, config.measure_iterations, log)
        source = source.for_backend(backend)  # an int8 export's flavor for this engine, if it has one
        cls = backend_class(backend)
        items = parse_devices(config.devices, cls.device_kinds)
        records = discover(backend, items)
        log(f"building {source.name} ({precision}) with {backend} {cls.version()} for "
            + ", ".join(f"{r.tag} ({r.describe()})" for r in records))
        engines = build_one(backend, source_dir, source, records, tmp, options, log)
        assignment, predicted = choose_placement(config, source, backend, tmp, engines, records, items, log)
        gate: AccuracyGate | None = None
        if precision in ("bf16", "int8") and config.eval_name is not None:
            gate = gate_accuracy(export_dir, export, backend, tmp / records[0].tag / engines[records[0].tag][WHOLE],
                                 source.whole, precision, config.eval_name, config.max_drop, log)
        files = hash_files(tmp, depth=2)
        manifest = EnginesManifest(
            name=target.name, backend=BackendRecord(backend, cls.version()), precision=precision, options=options,
            devices={r.tag: r for r in records}, engines=engines, placement=assignment, export=source,
            sources={f: spec.sha256 for f, spec in source.files.items()}, files=files,
            predicted=predicted, selection=trials, accuracy=gate)
        manifest.write(tmp)
    log(f"engines written to {target}/")
    return target, manifest
