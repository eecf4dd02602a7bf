"""``manifest.json`` of an export directory: typed, versioned, hash-verified on load.

Schema (version 1), one JSON object:

- ``schema``: ``"parnet-deploy/export"``; ``schema_version``: 1
- ``name``: export name; ``model``: the :class:`ParNetConfig` fields
- ``resolution``: ``[H, W]``; ``normalization``: ``{mean, std, layout, note}`` (applied by the caller)
- ``precision``: ``fp32`` | ``fp16``; ``split``: ``replicated`` | ``shared``; ``opset``
- ``whole``: the whole graph as a subgraph entry; ``subgraphs``: ``[{name, file, inputs, outputs}]``
  with tensors as ``{name, shape, dtype}``
- ``dag``: ``[{tensor, producer, consumers}]``; producer ``"input"`` is the image
- ``files``: ``{file: {sha256, bytes}}`` for every file in the directory but the manifest
- ``reference``: npz with ``image`` and ``logits`` (fp32 deploy form in PyTorch)
- ``versions``: toolkit, torch, onnx, onnxruntime; ``verification``: what the export checked
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..artifacts import sha256_file, write_json
from ..errors import ArtifactMismatchError, ArtifactNotFoundError, ExportError

SCHEMA = "parnet-deploy/export"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
IMAGE = "image"
LOGITS = "logits"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d["dtype"])


@dataclass(frozen=True)
class SubgraphSpec:
    name: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SubgraphSpec":
        return cls(d["name"], d["file"], tuple(map(TensorSpec.from_dict, d["inputs"])),
                   tuple(map(TensorSpec.from_dict, d["outputs"])))


@dataclass(frozen=True)
class Edge:
    tensor: str
    producer: str  # a subgraph name, or "input"
    consumers: tuple[str, ...]


@dataclass(frozen=True)
class FileSpec:
    sha256: str
    bytes: int


def dag_of(subgraphs: tuple[SubgraphSpec, ...]) -> tuple[Edge, ...]:
    """Which outputs feed which inputs, derived from tensor names."""
    producer = {t.name: s.name for s in subgraphs for t in s.outputs}
    edges: dict[str, Edge] = {}
    for s in subgraphs:
        for t in s.inputs:
            prev = edges.get(t.name)
            consumers = (prev.consumers if prev else ()) + (s.name,)
            edges[t.name] = Edge(t.name, producer.get(t.name, "input"), consumers)
    return tuple(edges.values())


@dataclass
class ExportManifest:
    name: str
    model: dict[str, Any]
    resolution: tuple[int, int]
    precision: str
    split: str
    opset: int
    whole: SubgraphSpec
    subgraphs: tuple[SubgraphSpec, ...]
    files: dict[str, FileSpec]
    normalization: dict[str, Any]
    reference: str = "reference.npz"
    versions: dict[str, str] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    @property
    def dag(self) -> tuple[Edge, ...]:
        return dag_of(self.subgraphs)

    @property
    def input(self) -> TensorSpec:
        return self.whole.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.whole.outputs[0]

    def subgraph(self, name: str) -> SubgraphSpec:
        for s in self.subgraphs:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dag"] = [asdict(e) for e in self.dag]
        head = {"schema": d.pop("schema"), "schema_version": d.pop("schema_version")}
        return head | d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExportManifest":
        d = dict(d)
        d.pop("dag", None)
        return cls(
            **{k: v for k, v in d.items() if k not in ("whole", "subgraphs", "files", "resolution")},
            resolution=tuple(d["resolution"]),
            whole=SubgraphSpec.from_dict(d["whole"]),
            subgraphs=tuple(map(SubgraphSpec.from_dict, d["subgraphs"])),
            files={k: FileSpec(**v) for k, v in d["files"].items()},
        )

    def write(self, directory: Path) -> None:
        write_json(directory / MANIFEST, self.to_dict())


def hash_files(directory: Path) -> dict[str, FileSpec]:
    return {p.name: FileSpec(sha256_file(p), p.stat().st_size)
            for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}


def read_manifest_json(path: Path, schema: str, version: int, redo: str) -> dict[str, Any]:
    """The raw JSON of a manifest whose schema name and version this toolkit reads."""
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise ExportError(f"{path}: malformed manifest: {e}") from e
    if not isinstance(raw, dict) or raw.get("schema") != schema:
        raise ExportError(f"{path}: not a {schema} manifest")
    if raw.get("schema_version") != version:
        raise ExportError(f"{path}: schema version {raw.get('schema_version')} is not supported "
                          f"(this toolkit reads {version}); {redo}")
    return raw


def verify_files(directory: Path, files: dict[str, FileSpec], manifest_name: str = MANIFEST, max_depth: int = 1,
                 redo: str = "re-export it") -> None:
    """Every listed file exists inside ``directory`` and has the recorded sha256."""
    for name, spec in files.items():
        parts = PurePosixPath(name).parts
        if len(parts) > max_depth or ".." in parts or PurePosixPath(name).is_absolute():
            raise ExportError(f"{directory}: {manifest_name} names a file outside the directory: {name!r}")
        p = directory / name
        if not p.is_file():
            raise ArtifactNotFoundError(f"{directory}: {name} is missing (listed in {manifest_name}); {redo}")
        if sha256_file(p) != spec.sha256:
            raise ArtifactMismatchError(f"{directory}: {name} does not match its sha256 in {manifest_name} "
                                        f"(modified after it was written?); {redo}")


def load_manifest(directory: str | Path, verify: bool = True) -> ExportManifest:
    """Read ``manifest.json`` and (by default) check every file's sha256 against it."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactNotFoundError(f"export directory not found: {directory}")
    if not path.is_file():
        raise ArtifactNotFoundError(f"{directory}: no {MANIFEST} (not an export directory, or an interrupted export)")
    raw = read_manifest_json(path, SCHEMA, SCHEMA_VERSION, "re-export")
    try:
        manifest = ExportManifest.from_dict(raw)
    except (KeyError, TypeError) as e:
        raise ExportError(f"{path}: malformed manifest: {e}") from e
    if verify:
        verify_files(directory, manifest.files)
    return manifest
