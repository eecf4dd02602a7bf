"""What an export was made from (``manifest.model``) and how it was split (``manifest.partition``).

``model`` is a record of ``family`` plus that family's own fields:

- ``parnet``: the :class:`ParNetConfig` (the torch backend rebuilds the deploy form from it);
- ``onnx``: a user's ONNX file, by its sha256 and opset, with every input and output.

Readers that only run graphs never look at the family: the subgraphs carry everything they need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..models.config import ParNetConfig
from .schema import Fields, check_name

FAMILIES = ("parnet", "onnx")
MAX_IO = 8  # inputs or outputs of a graph (the C library's limit too)


@dataclass(frozen=True)
class OnnxModelRecord:
    """A user's ONNX model: the file it came from and its interface (shapes fixed at export)."""

    source_sha256: str
    opset: int
    inputs: tuple  # tuple[TensorSpec, ...]
    outputs: tuple
    family: str = "onnx"

    def to_dict(self) -> dict[str, Any]:
        def tensors(specs):
            return [asdict(t) for t in specs]

        return {"family": "onnx", "source_sha256": self.source_sha256, "opset": self.opset,
                "inputs": tensors(self.inputs), "outputs": tensors(self.outputs)}


ModelRecord = ParNetConfig | OnnxModelRecord


def model_family(model: ModelRecord) -> str:
    return "parnet" if isinstance(model, ParNetConfig) else model.family


def model_to_dict(model: ModelRecord) -> dict[str, Any]:
    if isinstance(model, ParNetConfig):
        return {"family": "parnet", **model.to_dict()}
    return model.to_dict()


def parse_model(f: Fields, tensor_spec) -> ModelRecord:
    """``manifest.model`` → a :class:`ParNetConfig` or an :class:`OnnxModelRecord`.

    ``tensor_spec`` parses one tensor (``TensorSpec.parse``; passed in to keep imports one-way)."""
    family = f.str("family", choices=FAMILIES)
    if family == "parnet":
        fields = {k: v for k, v in f.d.items() if k != "family"}
        try:
            return ParNetConfig.from_dict(fields)
        except (TypeError, ValueError) as e:  # a ConfigError names the field itself, as everywhere
            raise f.error("family", f"expected a ParNet config ({e})") from e
    unknown = set(f.d) - {"family", "source_sha256", "opset", "inputs", "outputs"}
    if unknown:
        raise f.error(sorted(unknown)[0], "unknown field for the onnx family")

    def tensors(key):
        items = f.list(key, max_len=MAX_IO)
        if not items:
            raise f.error(key, "expected at least one tensor")
        return tuple(tensor_spec(Fields(t, f"{f.where}.{key}[{i}]")) for i, t in enumerate(items))

    return OnnxModelRecord(f.sha256("source_sha256"), f.int("opset", 7, 30), tensors("inputs"), tensors("outputs"))


@dataclass(frozen=True)
class PartitionedSubgraph:
    name: str
    stream: int | None
    share: float  # its operators' fraction of the model's predicted operator time
    cost_ms: float  # predicted: launch + copies in + operators


@dataclass(frozen=True)
class PartitionRecord:
    """The partitioner's decision, as ``parnet-export MODEL.onnx`` printed it."""

    devices: int
    streams: int
    launch_ms: float  # the measured per-subgraph launch cost the prediction used
    whole_ms: float
    critical_path_ms: float
    predicted_speedup: float  # whole_ms / critical_path_ms
    verdict: str
    subgraphs: tuple[PartitionedSubgraph, ...]

    @classmethod
    def parse(cls, f: Fields) -> PartitionRecord:
        subs = []
        for i, raw in enumerate(f.list("subgraphs", max_len=16)):
            s = Fields(raw, f"{f.where}.subgraphs[{i}]")
            stream = None if s.raw("stream") is None else s.int("stream", 0, 63)
            subs.append(PartitionedSubgraph(check_name(s.str("name"), f"{s.where}.name"), stream,
                                            s.number("share"), s.number("cost_ms")))
        return cls(f.int("devices", 1, 64), f.int("streams", 1, 64), f.number("launch_ms"), f.number("whole_ms"),
                   f.number("critical_path_ms"), f.number("predicted_speedup"), f.str("verdict"), tuple(subs))
