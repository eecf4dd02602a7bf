"""PyTorch deploy form → whole ONNX graph with stable tensor names → per-stream subgraphs.

The cut points carry names chosen here, not the exporter's: ``x{k}`` is the input of
stream k (output of ``inits.0..k``), ``y{k}`` its output. An output of one subgraph and the
input it feeds carry the same name, so the DAG is read off the names.
"""

from __future__ import annotations

import warnings

import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from ..artifacts.export_manifest import IMAGE, LOGITS, SPLITS
from ..errors import ExportError
from ..models import ParNet
from ..quiet import quiet
from . import passes

STREAMS = 3
OPSETS = (18, 19, 20)


def stream_input(k: int) -> str:
    return f"x{k}"


def stream_output(k: int) -> str:
    return f"y{k}"


def subgraph_plan(split: str) -> list[tuple[str, list[str], list[str], int | None]]:
    """``(name, inputs, outputs, stream)`` of each subgraph, in a valid execution order.

    ``replicated`` (the official multi-GPU split): stream k takes the image and recomputes
    its stem prefix. ``shared``: a ``stem`` subgraph computes x0, x1, x2 once.
    """
    fusion = ("fusion", [stream_output(k) for k in range(STREAMS)], [LOGITS], None)
    if split == "replicated":
        return [(f"stream{k}", [IMAGE], [stream_output(k)], k) for k in range(STREAMS)] + [fusion]
    if split == "shared":
        stem = ("stem", [IMAGE], [stream_input(k) for k in range(STREAMS)], None)
        return [stem] + [(f"stream{k}", [stream_input(k)], [stream_output(k)], k) for k in range(STREAMS)] + [fusion]
    raise ExportError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


class _NamedCuts(nn.Module):
    """Exposes the cut points as extra outputs so the exporter gives them our names."""

    def __init__(self, model: ParNet):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        xs = self.model.stem(image)
        ys = [stream(x) for stream, x in zip(self.model.streams, xs)]
        return (self.model.fusion(*ys), *xs, *ys)


def torch_to_onnx(model: ParNet, resolution: tuple[int, int], opset: int = 18) -> onnx.ModelProto:
    """Export the (deploy-form) model to one ONNX graph ``image → logits`` with named cut points."""
    if opset not in OPSETS:
        raise ExportError(f"opset {opset} not supported; choose one of {', '.join(map(str, OPSETS))}")
    x = torch.zeros(1, 3, *resolution)
    model.check_input(x)
    names = [LOGITS] + [stream_input(k) for k in range(STREAMS)] + [stream_output(k) for k in range(STREAMS)]
    with quiet("torch.onnx"), torch.no_grad():
        program = torch.onnx.export(_NamedCuts(model.eval()), (x,), None, dynamo=True, opset_version=opset,
                                    input_names=[IMAGE], output_names=names, external_data=False,
                                    verbose=False, report=False)
    graph = gs.import_onnx(program.model_proto)
    passes.fold_batchnorm_into_pointwise_conv(graph)
    passes.reduce_mean_to_global_average_pool(graph)
    graph.outputs = [t for t in graph.outputs if t.name == LOGITS]
    graph.name = model.config.arch
    proto = gs.export_onnx(graph.cleanup().toposort())
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


def cut(whole: onnx.ModelProto, inputs: list[str], outputs: list[str], name: str) -> onnx.ModelProto:
    """The part of ``whole`` between the named tensors (onnx-graphsurgeon)."""
    graph = gs.import_onnx(whole)
    tensors = graph.tensors()
    missing = [n for n in inputs + outputs if n not in tensors]
    if missing:
        raise ExportError(f"cannot cut {name}: no tensors named {missing} in the graph")
    graph.inputs = [tensors[n] for n in inputs]
    graph.outputs = [tensors[n] for n in outputs]
    for t in graph.inputs + graph.outputs:
        if t.dtype is None or t.shape is None:
            raise ExportError(f"cannot cut {name}: tensor {t.name} has no inferred type/shape")
    graph.name = name
    graph.cleanup().toposort()
    return gs.export_onnx(graph)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 inside, fp32 image in and logits out (onnxconverter-common)."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    return onnx.shape_inference.infer_shapes(half, strict_mode=True)


def count_nodes(model: onnx.ModelProto) -> int:
    return len(model.graph.node)
