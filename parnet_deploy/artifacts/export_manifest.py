"""``manifest.json`` of an export directory: typed, versioned, validated and hash-verified on load.

Schema (version 2), one JSON object:

- ``schema``: ``"parnet-deploy/export"``; ``schema_version``: 2
- ``name``: export name; ``model``: the :class:`ParNetConfig` fields
- ``resolution``: ``[H, W]``; ``normalization``: ``{mean, std, layout, note}`` (applied by the caller)
- ``precision``: ``fp32`` | ``fp16`` | ``int8`` (Q/DQ); ``split``: ``replicated`` | ``shared``; ``opset``
- ``whole``: the whole graph as a subgraph entry; ``subgraphs``: ``[{name, file, stream, inputs,
  outputs}]`` with tensors as ``{name, shape, dtype}``; ``stream`` is k for ``stream{k}``, else null
- ``dag``: ``[{tensor, producer, consumers}]``; producer ``"input"`` is the image (derived, for readers)
- ``files``: ``{file: {sha256, bytes}}`` for every file in the directory but the manifest
- ``reference``: npz with ``image`` and ``logits`` (fp32 deploy form in PyTorch)
- ``torch_weights``: ``deploy.safetensors`` (the deploy-form weights, for the torch backend) or null
- ``quantization``: int8 exports only (``parnet-quantize``): calibration, accuracy gate, what stayed float
- ``versions``: toolkit, torch, onnx, onnxruntime; ``verification``: what the export checked

Version 2 added ``stream`` and ``quantization``; version 1 exports must be re-exported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactNotFoundError, ConfigError, ExportError
from ..models.config import ParNetConfig
from ..models.cuts import SPLITS
from .dag import Dag
from .files import FileSpec, read_manifest_json, verify_files, write_json
from .schema import Fields, check_name, to_json_dict

SCHEMA = "parnet-deploy/export"
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
DTYPES = ("float32", "float16", "int8", "uint8")  # 8-bit: the quantized cuts of an int8 export
MAX_FILE_BYTES = 16 << 30
FLOAT32_MAX = float(np.finfo(np.float32).max)


def parse_files(f: Fields, depth: int) -> dict[str, FileSpec]:
    """``files``: relative path (``depth`` strict names joined by ``/``) → sha256 and size."""
    files = {}
    for name, spec in f.d.items():
        parts = name.split("/") if isinstance(name, str) else [name]
        if len(parts) > depth:
            raise f.error(name, f"expected at most {depth} path components")
        for part in parts:
            check_name(part, f.where)
        s = Fields(spec, f"{f.where}.{name}")
        files[name] = FileSpec(s.sha256("sha256"), s.int("bytes", 0, MAX_FILE_BYTES))
    return files


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name

    @classmethod
    def parse(cls, f: Fields) -> TensorSpec:
        return cls(f.str("name"), f.shape("shape"), f.str("dtype", choices=DTYPES))


@dataclass(frozen=True)
class SubgraphSpec:
    name: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    stream: int | None = None  # k for the subgraph of stream k

    @classmethod
    def parse(cls, f: Fields) -> SubgraphSpec:
        def tensors(key: str) -> tuple[TensorSpec, ...]:
            items = f.list(key, max_len=8)
            if not items:
                raise f.error(key, "expected at least one tensor")
            specs = tuple(TensorSpec.parse(Fields(t, f"{f.where}.{key}[{i}]")) for i, t in enumerate(items))
            if len({t.name for t in specs}) != len(specs):
                raise f.error(key, "a tensor is listed twice")
            return specs

        stream = f.raw("stream")
        if stream is not None:
            stream = f.int("stream", 0, 63)
        return cls(check_name(f.str("name"), f"{f.where}.name"), check_name(f.str("file"), f"{f.where}.file"),
                   tensors("inputs"), tensors("outputs"), stream)


@dataclass(frozen=True)
class Normalization:
    """How the caller turns an 8-bit image into the graph's input: ``(rgb / 255 - mean) / std``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCHW RGB"
    note: str = "x = (rgb / 255 - mean) / std, applied by the caller; not part of the graph"

    @classmethod
    def parse(cls, f: Fields) -> Normalization:
        std, mean = f.floats("std", 3), f.floats("mean", 3)
        if not np.isfinite(np.asarray(mean + std, np.float64)).all() or max(map(abs, mean + std)) > FLOAT32_MAX:
            raise f.error("normalization", "mean and std must be finite float32 numbers")
        # bounds that keep (x / 255 - mean) / std finite for every 8-bit x (the C library checks the same)
        if not all(1e-6 <= s <= 1e3 for s in std):
            raise f.error("std", "expected numbers in [1e-6, 1000]")
        if not all(-1e3 <= m <= 1e3 for m in mean):
            raise f.error("mean", "expected numbers in [-1000, 1000]")
        return cls(mean, std, f.str("layout", default="NCHW RGB"), f.str("note", default=""))


def normalize_u8(image: np.ndarray, mean, std, bgr: bool = False) -> np.ndarray:
    """An 8-bit HWC image (RGB, or BGR) → float32 CHW ``(rgb / 255 - mean) / std``.

    The one definition of the input transform: the data loaders use it, and the C library's
    ``prt_preprocess_u8`` performs the same float32 operations in the same order (bitwise equal).
    """
    rgb = np.asarray(image)[..., ::-1] if bgr else np.asarray(image)
    m, s = np.asarray(mean, np.float32)[:, None, None], np.asarray(std, np.float32)[:, None, None]
    return (np.asarray(rgb, np.float32).transpose(2, 0, 1) / np.float32(255) - m) / s


IMAGENET_NORMALIZATION = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class Int8Flavor:
    """The same calibrated scales placed for other engines: its own graph files, the same subgraphs."""

    name: str  # e.g. tensorrt
    backends: tuple[str, ...]  # the engines that build this flavor instead of the export's own graph
    placement: str
    whole: SubgraphSpec
    subgraphs: tuple[SubgraphSpec, ...]

    @classmethod
    def parse(cls, f: Fields) -> Int8Flavor:
        return cls(check_name(f.str("name"), f"{f.where}.name"),
                   tuple(check_name(b, f"{f.where}.backends") for b in f.strings("backends")), f.str("placement"),
                   SubgraphSpec.parse(f.obj("whole")),
                   tuple(SubgraphSpec.parse(Fields(s, f"{f.where}.subgraphs[{i}]"))
                         for i, s in enumerate(f.list("subgraphs", max_len=16))))


@dataclass(frozen=True)
class Quantization:
    """How an int8 (Q/DQ) export was made, and what its accuracy gate measured."""

    method: str  # calibration: minmax | entropy | percentile
    calibration: str  # the calibration source
    evaluation: str  # the labeled (or unlabeled) set the gate judged on
    level: str  # which LEVELS entry was accepted
    kept_float: tuple[str, ...]
    max_drop: float
    drop_points: float
    top1_fp32: float | None
    top1_int8: float | None
    agreement: float
    source: str  # name of the fp32 export it was quantized from
    source_sha256: str  # sha256 of that export's model.onnx
    flavor: str = "any"  # the flavor of the export's own graph files ("any": made before flavors, for every engine)
    flavors: tuple[Int8Flavor, ...] = ()  # the other placements, for the backends they name

    @classmethod
    def parse(cls, f: Fields) -> Quantization:
        return cls(f.str("method", choices=("minmax", "entropy", "percentile")), f.str("calibration"),
                   f.str("evaluation"), f.str("level"), f.strings("kept_float"), f.number("max_drop"),
                   f.number("drop_points"), f.number("top1_fp32", True), f.number("top1_int8", True),
                   f.number("agreement"), check_name(f.str("source"), f"{f.where}.source"),
                   f.sha256("source_sha256"), check_name(f.str("flavor", default="any"), f"{f.where}.flavor"),
                   tuple(Int8Flavor.parse(Fields(x, f"{f.where}.flavors[{i}]"))
                         for i, x in enumerate(f.list("flavors", max_len=4) if f.raw("flavors") is not None else [])))


@dataclass(frozen=True)
class ExportManifest:
    name: str
    model: ParNetConfig
    resolution: tuple[int, int]
    precision: str
    split: str
    opset: int
    whole: SubgraphSpec
    subgraphs: tuple[SubgraphSpec, ...]
    files: dict[str, FileSpec]
    normalization: Normalization
    reference: str = "reference.npz"
    quantization: Quantization | None = None
    torch_weights: str | None = None  # deploy-form safetensors for the torch backend (optional)
    versions: dict[str, str] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    @cached_property
    def dag(self) -> Dag:
        return Dag(self.subgraphs, tuple(t.name for t in self.whole.inputs), tuple(t.name for t in self.whole.outputs))

    @property
    def input(self) -> TensorSpec:
        return self.whole.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.whole.outputs[0]

    def subgraph(self, name: str) -> SubgraphSpec:
        return self.dag.spec(name)

    def with_files(self, whole: str, subgraphs: dict[str, str]) -> ExportManifest:
        """The same graph, with each subgraph's file replaced (engines point at their own files)."""
        return replace(self, whole=replace(self.whole, file=whole),
                       subgraphs=tuple(replace(s, file=subgraphs[s.name]) for s in self.subgraphs))

    def for_backend(self, backend: str) -> ExportManifest:
        """The manifest whose graph files ``backend`` builds and runs: an int8 flavor made for it, if any."""
        flavors = self.quantization.flavors if self.quantization is not None else ()
        flavor = next((x for x in flavors if backend in x.backends), None)
        return self if flavor is None else replace(self, whole=flavor.whole, subgraphs=flavor.subgraphs)

    # -- io ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["dag"] = self.dag.to_list()
        return to_json_dict(d)

    @classmethod
    def parse(cls, raw: Any, where: str = "manifest") -> ExportManifest:
        f = Fields(raw, where)
        try:
            model = ParNetConfig.from_dict(f.obj("model").d)
        except (TypeError, ValueError) as e:
            raise f.error("model", f"expected a ParNet config ({e})") from e
        files = parse_files(f.obj("files"), depth=1)
        subgraphs = tuple(SubgraphSpec.parse(Fields(s, f"{where}.subgraphs[{i}]"))
                          for i, s in enumerate(f.list("subgraphs", max_len=16)))
        quant = f.raw("quantization")
        manifest = cls(
            name=check_name(f.str("name"), f"{where}.name"), model=model,
            resolution=tuple(f.shape("resolution")), precision=f.str("precision", choices=PRECISIONS),
            split=f.str("split", choices=SPLITS), opset=f.int("opset", 7, 30),
            whole=SubgraphSpec.parse(f.obj("whole")), subgraphs=subgraphs, files=files,
            normalization=Normalization.parse(f.obj("normalization")),
            reference=check_name(f.str("reference", default="reference.npz"), f"{where}.reference"),
            quantization=None if quant is None else Quantization.parse(f.obj("quantization")),
            torch_weights=None if f.raw("torch_weights") is None
            else check_name(f.str("torch_weights"), f"{where}.torch_weights"),
            versions=dict(f.obj("versions", default={}).d), verification=dict(f.obj("verification", default={}).d))
        if len(manifest.resolution) != 2:
            raise f.error("resolution", "expected [H, W]")
        manifest.dag  # noqa: B018  (validates: acyclic, connected, every input produced)
        flavors = manifest.quantization.flavors if manifest.quantization is not None else ()
        for k, flavor in enumerate(flavors):
            _check_same_subgraphs(manifest, flavor, f"{where}.quantization.flavors[{k}]")
        referenced = [manifest.whole.file, *(s.file for s in subgraphs), *filter(None, [manifest.torch_weights]),
                      *(s.file for x in flavors for s in (x.whole, *x.subgraphs))]
        unlisted = [n for n in referenced if n not in files]
        if unlisted:
            raise f.error("files", f"no entry for the subgraph files {unlisted}")
        return manifest

    def write(self, directory: Path) -> None:
        write_json(directory / MANIFEST, self.to_dict())


def _check_same_subgraphs(manifest: ExportManifest, flavor: Int8Flavor, where: str) -> None:
    """A flavor differs in its files and in which cuts are int8, never in subgraphs, tensors or shapes."""
    def layout(specs):
        return [(s.name, s.stream, [(t.name, t.shape) for t in s.inputs], [(t.name, t.shape) for t in s.outputs])
                for s in specs]

    if layout((flavor.whole, *flavor.subgraphs)) != layout((manifest.whole, *manifest.subgraphs)):
        raise ExportError(f"{where}: its subgraphs and tensors differ from the export's")
    if [(t.name, t.dtype) for t in (*flavor.whole.inputs, *flavor.whole.outputs)] != \
            [(t.name, t.dtype) for t in (*manifest.whole.inputs, *manifest.whole.outputs)]:
        raise ExportError(f"{where}: its whole graph's inputs and outputs differ from the export's")


def load_manifest(directory: str | Path, verify: bool = True) -> ExportManifest:
    """Read and validate ``manifest.json``; by default check every file's size and sha256."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactNotFoundError(f"export directory not found: {directory}")
    if not path.is_file():
        raise ArtifactNotFoundError(f"{directory}: no {MANIFEST} (not an export directory, or an interrupted export)")
    raw = read_manifest_json(path, SCHEMA, SCHEMA_VERSION, "re-export it with parnet-export")
    try:
        manifest = ExportManifest.parse(raw, str(path))
    except ConfigError as e:
        raise ExportError(f"{path}: model: {e}") from e
    if verify:
        verify_files(directory, manifest.files, MANIFEST)
    return manifest
