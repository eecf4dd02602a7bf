"""``engines.json`` of an engine directory: what was built, for which device, from what.

Schema (version 1): ``schema``, ``schema_version``, ``name``, ``backend`` ``{name, version}``,
``precision``, ``build_options``, ``timing_cache`` (``{file, sha256}`` or null), ``devices``
(tag → :class:`DeviceRecord`), ``placement`` (subgraph or ``model`` → device tag),
``predicted`` (the placement's predicted critical path, or null), ``sources`` (ONNX file →
sha256 of the export it was built from), ``files`` (``<tag>/<file>`` → sha256, bytes), and
``export`` (the export's manifest: config, subgraph inputs/outputs, DAG).

Engines are tied to their device and backend version: TensorRT plans to the GPU's compute
capability and the TensorRT version, ONNX Runtime's saved optimized graphs (NCHWc layouts)
to the CPU and the ONNX Runtime version. Loading refuses a mismatch with a rebuild message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..errors import ArtifactNotFoundError, ExportError, UserError
from ..export.manifest import ExportManifest, FileSpec, read_manifest_json, verify_files

SCHEMA = "parnet-deploy/engines"
SCHEMA_VERSION = 1
MANIFEST = "engines.json"
WHOLE = "model"


class EngineIncompatibleError(UserError):
    """The engines were built for another device or backend version."""


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


@dataclass
class EnginesManifest:
    name: str
    backend: dict[str, str]
    precision: str
    devices: dict[str, DeviceRecord]
    placement: dict[str, str]
    export: dict[str, Any]
    sources: dict[str, str]
    files: dict[str, FileSpec]
    build_options: dict[str, Any] = field(default_factory=dict)
    timing_cache: dict[str, str] | None = None
    predicted: dict[str, Any] | None = None
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    # -- derived ----------------------------------------------------------------------------
    @property
    def export_manifest(self) -> ExportManifest:
        return ExportManifest.from_dict(self.export)

    def engine_file(self, subgraph: str) -> str:
        return f"{self.placement[subgraph]}/{subgraph}{ENGINE_SUFFIX[self.backend['name']]}"

    def export_view(self) -> ExportManifest:
        """The export manifest with every file pointing at its engine: what executors run."""
        m = self.export_manifest
        m.whole = replace(m.whole, file=self.engine_file(WHOLE))
        m.subgraphs = tuple(replace(s, file=self.engine_file(s.name)) for s in m.subgraphs)
        return m

    # -- io ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        head = {"schema": d.pop("schema"), "schema_version": d.pop("schema_version")}
        return head | d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EnginesManifest":
        d = dict(d)
        return cls(**{k: v for k, v in d.items() if k not in ("devices", "files")},
                   devices={k: DeviceRecord(**v) for k, v in d["devices"].items()},
                   files={k: FileSpec(**v) for k, v in d["files"].items()})

    def write(self, directory: Path) -> None:
        write_json(directory / MANIFEST, self.to_dict())


ENGINE_SUFFIX = {"onnxruntime": ".ort.onnx", "tensorrt": ".plan"}


def is_engine_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_engines(directory: str | Path, verify: bool = True) -> EnginesManifest:
    """Read ``engines.json`` and check every file's sha256 (compatibility is checked by the backend)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactNotFoundError(f"{directory}: no {MANIFEST} (not an engine directory; build one with parnet-build)")
    raw = read_manifest_json(path, SCHEMA, SCHEMA_VERSION, "rebuild")
    try:
        manifest = EnginesManifest.from_dict(raw)
    except (KeyError, TypeError) as e:
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
    backend = manifest.backend["name"]
    hint = f"rebuild with: parnet-build <export dir> --backend {backend}"
    if manifest.backend["version"] != running_version:
        raise EngineIncompatibleError(
            f"{directory}: engines were built with {backend} {manifest.backend['version']}, this is "
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
