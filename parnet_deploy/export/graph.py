"""PyTorch deploy form → whole ONNX graph with stable tensor names → per-stream subgraphs.

The cut points carry the names the model declares (``ParNet.cut_plan``), not the exporter's:
an output of one subgraph and the input it feeds carry the same name, so the DAG is read off
the names.
"""

from __future__ import annotations

import warnings

import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from ..errors import ConfigError, ExportError
from ..models import ParNet
from ..models.cuts import IMAGE, LOGITS, cut_tensors
from ..quiet import quiet
from . import passes
from .onnx_batch import BATCH_AXIS

OPSETS = (18, 19, 20)


def subgraph_plan(model: ParNet, split: str) -> list[tuple[str, list[str], list[str], int | None]]:
    """``(name, inputs, outputs, stream)`` of each subgraph, in a valid execution order: the model's own
    declaration (``ParNet.cut_plan``)."""
    try:
        return [(c.name, list(c.inputs), list(c.outputs), c.stream) for c in model.cut_plan(split)]
    except ConfigError as e:
        raise ExportError(str(e)) from e


class _NamedCuts(nn.Module):
    """Returns the logits and every cut tensor, so the exporter gives the cut points the plan's names."""

    def __init__(self, model: ParNet):
        super().__init__()
        self.model = model
        self.plan = model.cut_plan("shared")  # computes every tensor any split cuts at
        self.names = (LOGITS, *cut_tensors(self.plan))

    def forward(self, image: torch.Tensor):
        values = {IMAGE: image}
        for cut in self.plan:
            values.update(zip(cut.outputs, cut.run(*(values[n] for n in cut.inputs))))
        return tuple(values[n] for n in self.names)




def torch_to_onnx(model: ParNet, resolution: tuple[int, int], opset: int = 18,
                  batch: tuple[int, int] = (1, 1)) -> onnx.ModelProto:
    """Export the (deploy-form) model to one ONNX graph ``image → logits`` with named cut points.

    ``batch`` ``(min, max)``: equal, a static batch; else dim 0 of every tensor is ``batch``
    (torch.export's bounded ``Dim``; the bounds themselves go in the manifest)."""
    if opset not in OPSETS:
        raise ExportError(f"opset {opset} not supported; choose one of {', '.join(map(str, OPSETS))}")
    lo, hi = batch
    # torch.export specializes an example batch of 1, so a dynamic axis is traced at 2 or more
    x = torch.zeros(lo if lo == hi else max(lo, 2), 3, *resolution)
    model.check_input(x[:1])
    named = _NamedCuts(model.eval())
    dynamic = None if lo == hi else ({0: torch.export.Dim(BATCH_AXIS, min=lo, max=hi)},)
    with quiet("torch.onnx"), torch.no_grad():
        program = torch.onnx.export(named, (x,), None, dynamo=True, opset_version=opset,
                                    input_names=[IMAGE], output_names=list(named.names), external_data=False,
                                    dynamic_shapes=dynamic, verbose=False, report=False)
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
