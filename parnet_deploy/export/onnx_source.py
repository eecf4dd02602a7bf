"""A user's ``MODEL.onnx`` (untrusted input) → a checked, static-shape :class:`onnx.ModelProto`.

Everything downstream (partitioning, per-subgraph export, engines) assumes a self-contained file,
a graph the ONNX checker accepts, and a full static shape and a supported dtype on every tensor of
the main graph. This module is the one place that establishes those facts, so that each refusal is
one line naming the file and what to do, instead of a traceback from deep inside a later stage.

Nothing is written anywhere: the file is read once (size checked first), and the sha256 is that of
the very bytes parsed, so a file replaced while we read it cannot be hashed as one and used as another.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx.shape_inference
from onnx import TensorProto

from ..artifacts.export_manifest import TensorSpec
from ..artifacts.files import is_sparse
from ..errors import ConfigError, ExportError, UserError
from .onnx_batch import fix_batch

# protobuf cannot serialize (so neither check nor infer) a message of 2 GiB or more: a larger model is
# always split into external data, which we refuse anyway
MAX_ONNX_BYTES = 2 << 30
# int32: the largest dimension every engine we build for can index
MAX_DIM = (1 << 31) - 1
# ONNX element type → numpy dtype name: what the backends and the C library handle
SUPPORTED_DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.INT64: "int64",
    TensorProto.INT32: "int32",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.BOOL: "bool",
}
_MAX_MESSAGE = 300  # characters quoted from onnx's own errors: enough to act on, still one line
_SHAPE_HELP = "expected NAME=D0,D1,... with positive integer dimensions, e.g. input=1,3,224,224"
_DIM = re.compile(r"[0-9]{1,10}")
_MAX_ECHO = 100  # characters of the user's own text repeated in a message


def _echo(text: str) -> str:
    """``repr`` (one line whatever the text holds), shortened: a message quotes, it does not repeat."""
    return repr(text) if len(text) <= _MAX_ECHO else repr(text[:_MAX_ECHO]) + "..."


@dataclass(frozen=True, eq=False)  # eq=False: comparing two ModelProtos field by field is never what is meant
class OnnxSource:
    """A user's model, checked: self-contained, accepted by ``onnx.checker`` (full check), every input
    fixed to a static shape and every tensor of the main graph inferred to a static shape and a
    supported dtype. ``model`` carries those inferred shapes in ``graph.value_info``; it is this
    object's own parse of the file (copy it before changing it, the record is frozen, the proto is not)."""

    path: Path
    model: onnx.ModelProto
    sha256: str  # of the file's bytes, exactly those parsed
    opset: int  # of the default ("" / "ai.onnx") domain
    inputs: tuple[TensorSpec, ...]  # the real inputs, in graph order (initializers listed as inputs excluded)
    outputs: tuple[TensorSpec, ...]


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=1,3,224,224`` (the CLI's ``--input-shape``) → ``("NAME", (1, 3, 224, 224))``.

    The name is split off at the last ``=``: ONNX names may contain one, dimensions never do."""
    name, sep, dims = text.strip().rpartition("=")
    if not sep or not name:
        raise ConfigError(f"--input-shape {_echo(text)}: {_SHAPE_HELP}")
    parts = [p.strip() for p in dims.split(",")]
    bad = next((p for p in parts if not _DIM.fullmatch(p)), None)
    if bad is not None:
        what = "an empty dimension" if not bad else f"{_echo(bad)} is not a positive integer"
        raise ConfigError(f"--input-shape {_echo(text)}: {what}; {_SHAPE_HELP}")
    shape = tuple(int(p) for p in parts)
    if not all(1 <= d <= MAX_DIM for d in shape):
        raise ConfigError(f"--input-shape {_echo(text)}: every dimension must be in [1, {MAX_DIM}]; {_SHAPE_HELP}")
    return name, shape


def parse_input_shapes(texts: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Several ``--input-shape`` options → ``{name: shape}``; one name given twice is an error, not a choice."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, shape = parse_input_shape(text)
        if name in shapes:
            raise ConfigError(f"--input-shape gives input {_echo(name)} twice")
        shapes[name] = shape
    return shapes


def load_onnx_source(path: Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
                     batch: int | None = None) -> OnnxSource:
    """Read, check and fix the shapes of the ONNX model at ``path``; see :class:`OnnxSource`.

    ``input_shapes`` fixes dynamic input dimensions (``dim_param`` or unset): every dimension of the
    named input, static ones repeated as they are. Refusals: :class:`ExportError` for the file itself
    (missing, too large, not ONNX, external data, rejected by the checker), :class:`ConfigError` for
    input shapes (unfixed, unknown input, wrong rank, contradicting the model), :class:`UserError` for
    what the model computes but this toolkit cannot deploy (dynamic or unsupported intermediate tensors).
    ``batch``: dim 0 of every input, which must be dynamic in the model (``--batch``; it overrides dim 0
    of ``input_shapes``).
    """
    path = Path(path)
    data = _read_bounded(path)
    digest = hashlib.sha256(data).hexdigest()  # the bytes parsed, not a second read of a file that may change
    model = _parse(path, data)
    del data
    _refuse_external_data(path, model)
    _check(path, model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ExportError(f"{path}: the model imports no opset of the default ONNX domain; not a model to deploy")
    if opset > onnx.defs.onnx_opset_version():  # the checker accepts it, judging the ops by older schemas
        raise ExportError(f"{path}: opset {opset} is newer than the installed onnx {onnx.__version__} knows "
                          f"({onnx.defs.onnx_opset_version()}); re-export it with an older opset or upgrade onnx")
    _drop_initializer_inputs(model)
    if batch is not None:
        fix_batch(model, batch, str(path))
        input_shapes = {n: (batch, *s[1:]) for n, s in (input_shapes or {}).items()}
    _fix_input_shapes(path, model, dict(input_shapes or {}))
    model = _infer(path, model, input_shapes or {})
    specs = _tensor_specs(path, model)
    graph = model.graph
    return OnnxSource(path, model, digest, opset, tuple(specs[v.name] for v in graph.input),
                      tuple(specs[v.name] for v in graph.output))


# -- the file -------------------------------------------------------------------------------------

def _read_bounded(path: Path) -> bytes:
    """The file's bytes; its size is checked on the open descriptor before a byte is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # NONBLOCK: a FIFO must not hang us
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except OSError as e:
        raise ExportError(f"{path}: cannot open: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # a directory, FIFO or device: no size to check, nothing to parse
        os.close(fd)
        raise ExportError(f"{path}: not a regular file")
    with open(fd, "rb", closefd=True) as f:
        if st.st_size > MAX_ONNX_BYTES:
            raise ExportError(f"{path}: {st.st_size} bytes is too large for a self-contained ONNX model "
                              f"(limit {MAX_ONNX_BYTES})")
        if is_sparse(st):
            raise ExportError(f"{path}: sparse ({st.st_blocks * 512} bytes on disk for {st.st_size}); refused")
        try:
            data = f.read(st.st_size + 1)  # one byte more: a file that grows (or /proc's size 0) is caught
        except OSError as e:
            raise ExportError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) != st.st_size:
        raise ExportError(f"{path}: its size changed while it was read ({st.st_size} bytes, then {len(data)} or "
                          f"more); not a file to read once")
    return data


def _parse(path: Path, data: bytes) -> onnx.ModelProto:
    try:
        model = onnx.load_model_from_string(data)  # never follows external data: it has no directory to look in
    except Exception as e:  # DecodeError and whatever else protobuf raises on hostile bytes
        raise ExportError(f"{path}: not a valid ONNX model (truncated or not an ONNX file: "
                          f"{_first_line(e)})") from None
    if not model.HasField("graph") or not model.opset_import:
        raise ExportError(f"{path}: not a valid ONNX model (no graph or no opset import)")
    return model


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in the model: initializers (sparse ones too), tensor attributes, in every
    subgraph and model-local function; iterative, since a hostile file can nest graphs deeply."""
    nodes: list[onnx.NodeProto] = [n for f in model.functions for n in f.node]
    graphs = [model.graph]
    while graphs or nodes:
        if graphs:
            g = graphs.pop()
            yield from g.initializer
            for s in g.sparse_initializer:
                yield from (s.values, s.indices)
            nodes.extend(g.node)
            continue
        for attr in nodes.pop().attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for s in [attr.sparse_tensor] * attr.HasField("sparse_tensor") + list(attr.sparse_tensors):
                yield from (s.values, s.indices)
            graphs.extend([attr.g] * attr.HasField("g"))
            graphs.extend(attr.graphs)


def _refuse_external_data(path: Path, model: onnx.ModelProto) -> None:
    """External data would mean opening paths the file names: refused, without looking at them."""
    locations = []
    for t in _all_tensors(model):
        if t.data_location == TensorProto.EXTERNAL or len(t.external_data):
            locations += [e.value for e in t.external_data if e.key == "location"] or ["?"]
    if locations:
        names = ", ".join(repr(x[:80]) for x in dict.fromkeys(locations))
        raise ExportError(
            f"{path}: the model references external data ({names}); only self-contained ONNX files are read "
            f"(their external files are never opened). Save it with every tensor inside the file: "
            f"onnx.save_model(onnx.load({path.name!r}), 'self_contained.onnx', save_as_external_data=False) "
            f"(possible below 2 GiB)")


def _check(path: Path, model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # ValidationError, InferenceError, and anything else hostile protos provoke
        raise ExportError(f"{path}: rejected by the ONNX checker: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    line = next((s.strip() for s in str(e).splitlines() if s.strip()), type(e).__name__)
    return line if len(line) <= _MAX_MESSAGE else line[:_MAX_MESSAGE] + "..."


# -- inputs ---------------------------------------------------------------------------------------

def _drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Initializers listed as graph inputs (older exporters, IR < 4) are weights, not inputs: dropped
    from ``graph.input`` so that their declared (possibly dynamic) shapes do not shadow the weights'
    real ones in shape inference. IR 4 is the version that allows an initializer not to be an input."""
    graph = model.graph
    weights = {t.name for t in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    real = [v for v in graph.input if v.name not in weights]
    if len(real) != len(graph.input):
        del graph.input[:]
        graph.input.extend(real)
        model.ir_version = max(model.ir_version, 4)


def _fix_input_shapes(path: Path, model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    """Write ``shapes`` into the inputs' declared dimensions; every dimension left dynamic is an error
    that names the input, the dimension and the option that fixes it."""
    graph = model.graph
    by_name = {v.name: v for v in graph.input}
    weights = {t.name for t in graph.initializer}
    for name, shape in shapes.items():
        if name not in by_name:
            why = "an initializer (a weight)" if name in weights else "not an input of the model"
            listed = ", ".join(map(_echo, list(by_name)[:8])) + (", ..." if len(by_name) > 8 else "")
            raise ConfigError(f"{path}: --input-shape names {_echo(name)}: {why}; its inputs: {listed or 'none'}")
        if not isinstance(shape, tuple | list) or not shape or not all(
                type(d) is int and 1 <= d <= MAX_DIM for d in shape):
            raise ConfigError(f"{path}: --input-shape for {_echo(name)}: {repr(shape)[:_MAX_ECHO]} is not a tuple "
                              f"of integers in [1, {MAX_DIM}]")
    for v in graph.input:
        kind = v.type.WhichOneof("value")
        if kind != "tensor_type":
            what = kind.removesuffix("_type").replace("_", " ") if kind else "value of no type"
            raise UserError(f"{path}: input {_echo(v.name)} is a {what}, not a tensor; "
                            f"only tensor inputs are supported")
        t = v.type.tensor_type
        if t.elem_type not in SUPPORTED_DTYPES:
            raise UserError(f"{path}: input {_echo(v.name)} has dtype {_dtype_name(t.elem_type)}; supported: "
                            f"{', '.join(SUPPORTED_DTYPES.values())}")
        if not t.HasField("shape"):  # the checker already refuses this (onnx 1.23); kept for other versions
            raise ExportError(f"{path}: input {_echo(v.name)} declares no shape (not even its rank)")
        given, dims = shapes.get(v.name), t.shape.dim
        if given is not None:
            if len(given) != len(dims):
                raise ConfigError(f"{path}: input {_echo(v.name)} has {len(dims)} dimensions, --input-shape gives "
                                  f"{len(given)} ({','.join(map(str, given))[:_MAX_ECHO]})")
            for i, (dim, d) in enumerate(zip(dims, given)):
                if _static(dim) and dim.dim_value != d:
                    raise ConfigError(f"{path}: dimension {i} of input {_echo(v.name)} is {dim.dim_value} in the "
                                      f"model, --input-shape gives {d}")
                dim.dim_value = d  # clears a dim_param (a oneof)
            continue
        dynamic = [i for i, dim in enumerate(dims) if not _static(dim)]
        if dynamic:
            i = dynamic[0]
            template = ",".join(str(d.dim_value) if _static(d) else _param(d.dim_param) for d in dims)
            what = f"dynamic ({_echo(dims[i].dim_param)})" if dims[i].dim_param else "dynamic (no size)"
            raise ConfigError(f"{path}: dimension {i} of input {_echo(v.name)} is {what}; fix it with "
                              f"{_option(v.name, template)}, each dynamic dimension replaced by a positive "
                              f"integer")


def _option(name: str, dims: str) -> str:
    """The option to type, quoted for a shell; a name that cannot be typed (or shown on one line) is left out."""
    arg = f"{name}={dims}"
    if arg.isprintable() and len(name) <= _MAX_ECHO:
        return f"--input-shape {shlex.quote(arg)}"
    return f"--input-shape NAME={dims} (NAME: the input's name)"


def _param(name: str) -> str:
    """A dim_param as a placeholder in the suggested option: its own name when that reads as one, else ``?``."""
    return name if name and name.isprintable() and len(name) <= 20 and not set(name) & set(",= ") else "?"


def _static(dim: onnx.TensorShapeProto.Dimension) -> bool:
    """A size, 0 included (an empty tensor is static); a negative ``dim_value`` is as good as none."""
    return dim.WhichOneof("value") == "dim_value" and dim.dim_value >= 0


def _dtype_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"#{elem_type}"


# -- shapes ---------------------------------------------------------------------------------------

def _infer(path: Path, model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:
        given = f" with the input shapes {str(dict(shapes))[:2 * _MAX_ECHO]}" if shapes else ""
        raise UserError(f"{path}: shape inference failed{given}: {_first_line(e)}") from None


def _tensor_specs(path: Path, model: onnx.ModelProto) -> dict[str, TensorSpec]:
    """Name → static shape and dtype for every tensor of the main graph (its inputs, every node's outputs,
    its outputs); the first one without (node outputs in graph order) is an error naming it."""
    graph = model.graph
    types = {v.name: v.type for v in (*graph.input, *graph.value_info, *graph.output)}
    producers = {out: n for n in graph.node for out in n.output if out}
    names = list(dict.fromkeys([*(v.name for v in graph.input), *producers, *(v.name for v in graph.output)]))
    weights = {t.name: t for t in graph.initializer}
    sparse = {s.values.name for s in graph.sparse_initializer}
    specs: dict[str, TensorSpec] = {}
    problems = []
    for name in names:
        if name in sparse and name not in producers:
            problem = "is a sparse weight"
        elif name in weights and name not in producers:  # a graph output that is a weight
            t = weights[name]
            problem = None if t.data_type in SUPPORTED_DTYPES else f"has dtype {_dtype_name(t.data_type)}"
            if problem is None:
                specs[name] = TensorSpec(name, tuple(int(d) for d in t.dims), SUPPORTED_DTYPES[t.data_type])
        else:
            problem, spec = _spec(name, types.get(name))
            if spec is not None:
                specs[name] = spec
        if problem is not None:
            node = producers.get(name)
            op = node.op_type if node.op_type.isidentifier() else _echo(node.op_type)
            where = f" (output of {op} node {_echo(node.name)})" if node is not None else ""
            problems.append(f"tensor {_echo(name)}{where} {problem}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{path}: {problems[0]}{more}; every tensor needs a static shape and one of the dtypes "
                        f"{', '.join(SUPPORTED_DTYPES.values())}")
    return specs


def _spec(name: str, type_: onnx.TypeProto | None) -> tuple[str | None, TensorSpec | None]:
    if type_ is None or type_.WhichOneof("value") is None:
        return "has no inferred type or shape", None
    kind = type_.WhichOneof("value")
    if kind != "tensor_type":
        return f"is a {kind.removesuffix('_type').replace('_', ' ')}, not a tensor", None
    t = type_.tensor_type
    if t.elem_type not in SUPPORTED_DTYPES:
        return f"has dtype {_dtype_name(t.elem_type)}", None
    if not t.HasField("shape"):
        return "has no inferred shape (not even a rank)", None
    dynamic = [i for i, d in enumerate(t.shape.dim) if not _static(d)]
    if dynamic:
        return f"has no static size in dimension {dynamic[0]}", None
    return None, TensorSpec(name, tuple(d.dim_value for d in t.shape.dim), SUPPORTED_DTYPES[t.elem_type])
