"""``engines.json`` of an engine directory: what was built, for which device, from what.

Schema (version 3, embedding a version-3 export): ``schema``, ``schema_version``, ``name``,
``backend`` ``{name, version}``,
``precision`` (what runs: fp32 | fp16 | bf16 | int8), ``options`` (:class:`BuildOptions`),
``devices`` (tag → :class:`DeviceRecord`), ``engines`` (tag → subgraph → file in ``<tag>/``),
``placement`` (subgraph or ``model`` → device tag), ``predicted`` (the placement's predicted
critical path, or null), ``selection`` (``--backend auto``: every candidate's measured latency),
``accuracy`` (the accuracy gate of a reduced precision, or null), ``sources`` (file → sha256
of the export it was built from), ``files`` (``<tag>/<file>`` → sha256, bytes), and ``export``
(the export's manifest: config, subgraph inputs/outputs, DAG).

Engines are tied to their device and backend version: TensorRT plans to the GPU's compute
capability and TensorRT version, ONNX Runtime's saved optimized graphs (NCHWc layouts) and
OpenVINO's compiled blobs to the CPU model and their version. Loading refuses a mismatch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ArtifactNotFoundError, ConfigError, EngineIncompatibleError, ExportError
from .build_records import AccuracyGate, Placement, Trial
from .export_manifest import ExportManifest, parse_files
from .files import FileSpec, read_manifest_json, verify_files, write_json
from .schema import MAX_BATCH, Fields, check_name, to_json_dict

SCHEMA = "parnet-deploy/engines"
SCHEMA_VERSION = 3
MANIFEST = "engines.json"
WHOLE = "model"
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class DeviceRecord:
    """One device engines were built on. ``compute_capability`` and ``uuid`` are GPU-only."""

    tag: str
    kind: str  # "cpu" or "cuda"
    name: str
    index: int | None = None
    compute_capability: str | None = None
    uuid: str | None = None

    def describe(self) -> str:
        cc = f", compute capability {self.compute_capability}" if self.compute_capability else ""
        return f"{self.name}{cc}"

    @classmethod
    def parse(cls, f: Fields) -> DeviceRecord:
        index = f.raw("index")
        return cls(check_name(f.str("tag"), f"{f.where}.tag"), f.str("kind", choices=DEVICE_KINDS), f.str("name"),
                   None if index is None else f.int("index", 0, 1023), f.raw("compute_capability"), f.raw("uuid"))


@dataclass(frozen=True)
class BackendRecord:
    name: str
    version: str


@dataclass(frozen=True)
class BuildOptions:
    """What a builder is asked for (recorded in engines.json).

    precision: what the engine computes in: ``fp32`` / ``fp16`` / ``int8`` follow the export
    (fp16 casts, Q/DQ nodes); ``bf16`` is an OpenVINO inference-precision hint on an fp32
    export. workspace_mib: TensorRT's builder workspace. timing_cache: a folder of TensorRT
    timing caches, one per GPU model and TensorRT version.
    """

    precision: str = "fp32"
    workspace_mib: int = 2048
    timing_cache: str | None = None
    profile: tuple[int, int, int] | None = None  # (min, opt, max) batch of a dynamic export; None: static

    @classmethod
    def parse(cls, f: Fields) -> BuildOptions:
        cache, profile = f.raw("timing_cache"), f.raw("profile")
        if profile is not None:
            p = f.obj("profile")
            profile = (p.int("min", 1, MAX_BATCH), p.int("opt", 1, MAX_BATCH), p.int("max", 1, MAX_BATCH))
            if not profile[0] <= profile[1] <= profile[2] or profile[0] == profile[2]:
                raise f.error("profile", f"expected min <= opt <= max and min < max, got {profile}")
        return cls(f.str("precision", choices=PRECISIONS), f.int("workspace_mib", 1, 1 << 20),
                   None if cache is None else f.str("timing_cache"), profile)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = None if self.profile is None else dict(zip(("min", "opt", "max"), self.profile))
        return d


@dataclass(frozen=True)
class EnginesManifest:
    name: str
    backend: BackendRecord
    precision: str
    options: BuildOptions
    devices: dict[str, DeviceRecord]
    engines: dict[str, dict[str, str]]
    placement: dict[str, str]
    export: ExportManifest
    sources: dict[str, str]
    files: dict[str, FileSpec]
    predicted: Placement | None = None
    selection: tuple[Trial, ...] = ()
    accuracy: AccuracyGate | None = None
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    def engine_file(self, subgraph: str) -> str:
        tag = self.placement[subgraph]
        return f"{tag}/{self.engines[tag][subgraph]}"

    def export_view(self) -> ExportManifest:
        """The export manifest with every file pointing at its engine: what executors run."""
        return self.export.with_files(self.engine_file(WHOLE),
                                      {s.name: self.engine_file(s.name) for s in self.export.subgraphs})

    # -- io ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["export"] = self.export.to_dict()
        d["options"] = self.options.to_dict()
        return to_json_dict(d)

    @classmethod
    def parse(cls, raw: Any, where: str = "engines.json") -> EnginesManifest:
        f = Fields(raw, where)
        b = f.obj("backend")
        devices = {check_name(tag, f"{where}.devices"): DeviceRecord.parse(Fields(d, f"{where}.devices.{tag}"))
                   for tag, d in f.obj("devices").d.items()}
        export = ExportManifest.parse(f.raw("export"), f"{where}.export")
        subgraphs = {WHOLE, *(s.name for s in export.subgraphs)}
        engines: dict[str, dict[str, str]] = {}
        for tag, per in f.obj("engines").d.items():
            if tag not in devices:
                raise f.error("engines", f"device tag {tag!r} is not in devices")
            per_f = Fields(per, f"{where}.engines.{tag}")
            if set(per_f.d) != subgraphs:
                raise per_f.error("", f"expected an engine for each of {sorted(subgraphs)}")
            engines[tag] = {s: check_name(per_f.str(s), f"{per_f.where}.{s}") for s in sorted(subgraphs)}
        placement = {}
        for sub, tag in f.obj("placement").d.items():
            if sub not in subgraphs or tag not in engines:
                raise f.error("placement", f"{sub!r} -> {tag!r}: unknown subgraph or device without engines")
            placement[sub] = tag
        if set(placement) != subgraphs:
            raise f.error("placement", f"expected a device for each of {sorted(subgraphs)}")
        files = parse_files(f.obj("files"), depth=2)
        unlisted = [f"{t}/{e}" for t, per in engines.items() for e in per.values() if f"{t}/{e}" not in files]
        if unlisted:
            raise f.error("files", f"no entry for the engine files {unlisted[:3]}")
        precision, options = f.str("precision", choices=PRECISIONS), BuildOptions.parse(f.obj("options"))
        allowed = ("fp32", "bf16") if export.precision == "fp32" else (export.precision,)
        if options.precision != precision or precision not in allowed:
            raise f.error("precision", f"{precision!r} does not fit options.precision {options.precision!r} and the "
                                       f"export's {export.precision!r}")
        dim = export.batch
        if (options.profile is None) != (dim is None) or (dim is not None and (options.profile[0], options.profile[2])
                                                           != (dim.min, dim.max)):
            raise f.error("options", f"profile {options.profile} does not fit the export's batch "
                                     f"{'(static)' if dim is None else dim}")
        trials = tuple(Trial.parse(Fields(t, f"{where}.selection[{i}]"))
                       for i, t in enumerate(f.list("selection", 16) if f.raw("selection") is not None else []))
        predicted, accuracy = f.raw("predicted"), f.raw("accuracy")
        return cls(name=check_name(f.str("name"), f"{where}.name"),
                   backend=BackendRecord(b.str("name"), b.str("version")),
                   precision=precision, options=options,
                   devices=devices, engines=engines, placement=placement, export=export,
                   sources={k: str(v) for k, v in f.obj("sources").d.items()}, files=files,
                   predicted=None if predicted is None else Placement.parse(f.obj("predicted")), selection=trials,
                   accuracy=None if accuracy is None else AccuracyGate.parse(f.obj("accuracy")))

    def write(self, directory: Path) -> None:
        write_json(directory / MANIFEST, self.to_dict())


def is_engine_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_engines(directory: str | Path, verify: bool = True) -> EnginesManifest:
    """Read and validate ``engines.json``; check every file's size and sha256 (compatibility: the backend)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactNotFoundError(f"{directory}: no {MANIFEST} (not an engine directory; "
                                    "build one with parnet-build)")
    raw = read_manifest_json(path, SCHEMA, SCHEMA_VERSION, "rebuild with parnet-build")
    try:
        manifest = EnginesManifest.parse(raw, str(path))
    except (ConfigError, TypeError) as e:
        raise ExportError(f"{path}: malformed engines manifest: {e}") from e
    if verify:
        verify_files(directory, manifest.files, MANIFEST, max_depth=2, redo="rebuild with parnet-build")
    return manifest


def check_compatible(manifest: EnginesManifest, running_version: str,
                     running_devices: dict[str, DeviceRecord | None], directory: str | Path = "") -> None:
    """Refuse engines built for another backend version or device, with a rebuild hint.

    ``running_devices`` maps each device tag the placement uses to what that device is
    here (None: no such device).
    """
    backend = manifest.backend.name
    hint = f"rebuild with: parnet-build <export dir> --backend {backend}"
    if manifest.backend.version != running_version:
        raise EngineIncompatibleError(
            f"{directory}: engines were built with {backend} {manifest.backend.version}, this is "
            f"{backend} {running_version}; {hint}")
    for tag in sorted(set(manifest.placement.values())):
        built, here = manifest.devices[tag], running_devices.get(tag)
        if here is None:
            raise EngineIncompatibleError(f"{directory}: engines for {tag} ({built.describe()}) but no such device "
                                          f"here; {hint}")
        if built.kind == "cuda" and built.compute_capability != here.compute_capability:
            raise EngineIncompatibleError(
                f"{directory}: engines for {tag} were built for compute capability {built.compute_capability} "
                f"({built.name}); this GPU is {here.compute_capability} ({here.name}); rebuild for this GPU: {hint}")
        if built.kind == "cpu" and built.name != here.name:
            raise EngineIncompatibleError(
                f"{directory}: engines for {tag} were optimized for {built.name}; this CPU is {here.name}; {hint}")
