"""``manifest.json`` of an export directory: typed, versioned, validated and hash-verified on load.

Schema (version 3), one JSON object:

- ``schema``: ``"parnet-deploy/export"``; ``schema_version``: 3
- ``name``: export name; ``model``: ``{family, ...}`` (``model_record.py``: ``parnet`` with the
  :class:`ParNetConfig` fields, or ``onnx`` with the source file's sha256, opset, inputs and outputs)
- ``normalization``: ``[{input, mean, std, layout, note}]``, one per image input that declares one
  (applied by the caller; any channel count; empty for a model without image inputs)
- ``precision``: ``fp32`` | ``fp16`` | ``int8`` (Q/DQ); ``split``: ``replicated`` | ``shared``; ``opset``
- ``whole``: the whole graph as a subgraph entry; ``subgraphs``: ``[{name, file, stream, inputs,
  outputs}]`` with tensors as ``{name, shape, dtype}``; ``stream`` is k for ``stream{k}``, else null
- ``dag``: ``[{tensor, producer, consumers}]``; producer ``"input"`` is the image (derived, for readers)
- ``files``: ``{file: {sha256, bytes}}`` for every file in the directory but the manifest
- ``reference``: npz of the whole graph's inputs and outputs by tensor name (ParNet: ``image`` and
  ``logits`` of the fp32 deploy form in PyTorch)
- ``partition``: how ``parnet-export MODEL.onnx`` split the model (devices, per-subgraph cost share and
  stream, predicted speed-up, the launch cost it used), or null
- ``torch_weights``: ``deploy.safetensors`` (the deploy-form weights, for the torch backend) or null
- ``quantization``: int8 exports only (``parnet-quantize``): calibration, accuracy gate, what stayed float
- ``versions``: toolkit, torch, onnx, onnxruntime; ``verification``: what the export checked

Version 3 made ``model`` a family record, normalization optional and per input, dropped
``resolution`` (the image input's shape says it), added ``partition`` and the int32, int64 and bool
dtypes. Version 2 added ``stream`` and ``quantization``. Older exports must be re-exported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactNotFoundError, ConfigError, ExportError, UserError
from ..models.cuts import SPLITS
from .dag import Dag
from .files import FileSpec, read_manifest_json, verify_files, write_json
from .model_record import MAX_IO, ModelRecord, PartitionRecord, model_family, model_to_dict, parse_model
from .schema import BatchDim, Fields, check_name, to_json_dict

SCHEMA = "parnet-deploy/export"
SCHEMA_VERSION = 3
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
# 8-bit: also the quantized cuts of an int8 export; the integer and bool types: real models' indices and masks
DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64", "bool")
SPLITS_V3 = (*SPLITS, "auto", "none")  # ParNet's named splits; a partitioned (auto) or unsplit ONNX model
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
    shape: tuple[int | BatchDim, ...]  # dim 0 is a BatchDim in a dynamic-batch export
    dtype: str  # numpy dtype name

    @classmethod
    def parse(cls, f: Fields) -> TensorSpec:
        return cls(f.str("name"), f.shape("shape"), f.str("dtype", choices=DTYPES))

    @property
    def batch(self) -> BatchDim | None:
        """The bounded batch axis, or None (every dim static)."""
        return self.shape[0] if self.shape and isinstance(self.shape[0], BatchDim) else None

    def shape_at(self, batch: int | None) -> tuple[int, ...]:
        """The concrete shape at ``batch`` (None: the smallest batch; static shapes ignore it)."""
        dim = self.batch
        if dim is None:
            return tuple(self.shape)
        return (dim.min if batch is None else batch, *self.shape[1:])

    @property
    def max_shape(self) -> tuple[int, ...]:
        """The shape at the largest batch: what a buffer sized once for every call holds."""
        return self.shape_at(self.batch.max if self.batch is not None else None)

    def describe(self) -> str:
        return "[" + ", ".join(map(str, self.shape)) + "]"


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
            items = f.list(key, max_len=MAX_IO)
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


MAX_CHANNELS = 64


@dataclass(frozen=True)
class Normalization:
    """How the caller turns an 8-bit image into the image input ``input``: ``(x / 255 - mean) / std``
    per channel (any channel count; the image calls of the C library take 3, RGB)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str = "NCHW RGB"
    note: str = "x = (rgb / 255 - mean) / std, applied by the caller; not part of the graph"
    input: str = "image"

    @classmethod
    def parse(cls, f: Fields) -> Normalization:
        mean = f.raw("mean")
        channels = len(mean) if isinstance(mean, list) and 0 < len(mean) <= MAX_CHANNELS else 3
        std, mean = f.floats("std", channels), f.floats("mean", channels)
        if not np.isfinite(np.asarray(mean + std, np.float64)).all() or max(map(abs, mean + std)) > FLOAT32_MAX:
            raise f.error("normalization", "mean and std must be finite float32 numbers")
        # bounds that keep (x / 255 - mean) / std finite for every 8-bit x (the C library checks the same)
        if not all(1e-6 <= s <= 1e3 for s in std):
            raise f.error("std", "expected numbers in [1e-6, 1000]")
        if not all(-1e3 <= m <= 1e3 for m in mean):
            raise f.error("mean", "expected numbers in [-1000, 1000]")
        return cls(mean, std, f.str("layout", default="NCHW RGB"), f.str("note", default=""), f.str("input"))


def normalize_u8(image: np.ndarray, mean, std, bgr: bool = False) -> np.ndarray:
    """An 8-bit HWC image (RGB, or BGR) → float32 CHW ``(rgb / 255 - mean) / std``.

    The one definition of the input transform: the data loaders use it, and the C library's
    ``prt_preprocess_u8`` performs the same float32 operations in the same order (bitwise equal).
    """
    rgb = np.asarray(image)[..., ::-1] if bgr else np.asarray(image)
    m, s = np.asarray(mean, np.float32)[:, None, None], np.asarray(std, np.float32)[:, None, None]
    return (np.asarray(rgb, np.float32).transpose(2, 0, 1) / np.float32(255) - m) / s


IMAGENET_NORMALIZATION = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # of ParNet's "image"


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
    model: ModelRecord
    precision: str
    split: str
    opset: int
    whole: SubgraphSpec
    subgraphs: tuple[SubgraphSpec, ...]
    files: dict[str, FileSpec]
    normalizations: tuple[Normalization, ...]  # written as "normalization"
    reference: str = "reference.npz"
    quantization: Quantization | None = None
    partition: PartitionRecord | None = None
    torch_weights: str | None = None  # deploy-form safetensors for the torch backend (optional)
    versions: dict[str, str] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    @cached_property
    def dag(self) -> Dag:
        return Dag(self.subgraphs, tuple(t.name for t in self.whole.inputs), tuple(t.name for t in self.whole.outputs))

    @property
    def family(self) -> str:
        return model_family(self.model)

    @property
    def input(self) -> TensorSpec:
        """The one input of an image model (ParNet's ``image``); see :attr:`whole` for several."""
        return self.whole.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.whole.outputs[0]

    @property
    def normalization(self) -> Normalization:
        """The image input's normalization: what the image data sources (calibration, accuracy
        gates) apply. Refused for a model with other inputs or none declared."""
        if len(self.whole.inputs) != 1 or len(self.normalizations) != 1:
            raise UserError(f"export {self.name!r} is not an image model with one normalized input "
                            f"({len(self.whole.inputs)} inputs, {len(self.normalizations)} normalizations); "
                            "image data sources need one")
        return self.normalizations[0]

    @property
    def batch(self) -> BatchDim | None:
        """The bounded batch axis every graph and boundary tensor shares, or None (static shapes)."""
        return self.whole.inputs[0].batch

    @property
    def resolution(self) -> tuple[int, int]:
        """``(H, W)`` of the image input (N, C, H, W)."""
        shape = self.whole.inputs[0].shape if len(self.whole.inputs) == 1 else ()
        if len(shape) != 4:
            raise UserError(f"export {self.name!r}: the input {self.input.name!r} is not the one N, C, H, W input")
        return tuple(shape[2:])

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
        d["model"] = model_to_dict(self.model)
        d["normalization"] = d.pop("normalizations")
        d["dag"] = self.dag.to_list()
        return to_json_dict(d)

    @classmethod
    def parse(cls, raw: Any, where: str = "manifest") -> ExportManifest:
        f = Fields(raw, where)
        model = parse_model(f.obj("model"), TensorSpec.parse)
        files = parse_files(f.obj("files"), depth=1)
        subgraphs = tuple(SubgraphSpec.parse(Fields(s, f"{where}.subgraphs[{i}]"))
                          for i, s in enumerate(f.list("subgraphs", max_len=16)))
        quant, partition = f.raw("quantization"), f.raw("partition")
        norms = tuple(Normalization.parse(Fields(x, f"{where}.normalization[{i}]"))
                      for i, x in enumerate(f.list("normalization", max_len=MAX_IO)))
        manifest = cls(
            name=check_name(f.str("name"), f"{where}.name"), model=model,
            precision=f.str("precision", choices=PRECISIONS),
            split=f.str("split", choices=SPLITS_V3), opset=f.int("opset", 7, 30),
            whole=SubgraphSpec.parse(f.obj("whole")), subgraphs=subgraphs, files=files, normalizations=norms,
            partition=None if partition is None else PartitionRecord.parse(f.obj("partition")),
            reference=check_name(f.str("reference", default="reference.npz"), f"{where}.reference"),
            quantization=None if quant is None else Quantization.parse(f.obj("quantization")),
            torch_weights=None if f.raw("torch_weights") is None
            else check_name(f.str("torch_weights"), f"{where}.torch_weights"),
            versions=dict(f.obj("versions", default={}).d), verification=dict(f.obj("verification", default={}).d))
        check_normalizations(manifest.normalizations, manifest.whole.inputs, f"{where}.normalization")
        check_batch(manifest, where)
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


def check_normalizations(norms: tuple[Normalization, ...], inputs: tuple[TensorSpec, ...], where: str) -> None:
    """Each names a distinct graph input of N, C, ... with C values of mean and std."""
    shapes = {t.name: t.shape for t in inputs}
    seen = set()
    for k, norm in enumerate(norms):
        if norm.input not in shapes:
            raise ExportError(f"{where}[{k}].input: {norm.input!r:.80} is not an input of the graph "
                              f"({', '.join(map(repr, shapes))})"[:400])
        if norm.input in seen:
            raise ExportError(f"{where}[{k}].input: {norm.input!r:.80} is normalized twice")
        seen.add(norm.input)
        shape = shapes[norm.input]
        if len(shape) < 2 or shape[1] != len(norm.mean):
            raise ExportError(f"{where}[{k}]: normalization of {norm.input!r:.80} has {len(norm.mean)} channels; "
                              f"the input is {list(shape)}")


def batch_of(specs: tuple[TensorSpec, ...], feeds: dict[str, Any], where: str) -> int | None:
    """The batch a call's feeds carry: dim 0 of every input on the bounded batch axis, the same for
    all and within the bounds (a UserError naming them); None for static inputs."""
    batch = None
    for t in specs:
        shape = getattr(feeds.get(t.name), "shape", None)
        if t.batch is None or not shape:
            continue  # static, or not an array: the shape check names it
        n = int(shape[0])
        if n not in t.batch:
            raise UserError(f"{where}: batch {n} is outside the bounds {t.batch} (input {t.name!r})")
        if batch is not None and n != batch:
            raise UserError(f"{where}: the inputs disagree on the batch ({batch} vs {n} for {t.name!r})")
        batch = n
    return batch


def check_batch(manifest: ExportManifest, where: str) -> None:
    """One batch axis: a dynamic export bounds dim 0 of every graph and boundary tensor alike."""
    flavors = manifest.quantization.flavors if manifest.quantization is not None else ()
    graphs = (manifest.whole, *manifest.subgraphs, *(s for x in flavors for s in (x.whole, *x.subgraphs)))
    bounds = {t.batch for s in graphs for t in (*s.inputs, *s.outputs)}
    if len(bounds) > 1:
        shown = ", ".join(sorted("static" if b is None else str(b) for b in bounds))
        raise ExportError(f"{where}: tensors disagree on the batch axis ({shown}); a dynamic export bounds "
                          "dim 0 of every tensor alike")


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
