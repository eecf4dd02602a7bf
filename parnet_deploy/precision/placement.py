"""Where the int8 graph's Q/DQ pairs go: the (node, input index) edges that read a quantized tensor.

Rules, after TensorRT's Q/DQ guidance and NVIDIA ModelOpt's settings for ORT-quantized graphs:
pairs go on the *inputs* of the ops a level names, one dedicated pair per consuming input. Weighted ops
(Conv, Gemm) get one on their activation input (their weight is quantized per channel by the
calibrator). Outputs of Sigmoid and of global pools never get a pair: the SE gates (1x1 convs on a
pooled 1x1 tensor, GEMVs with no int8 speed-up to win) and the classifier on the pooled features stay
float. Biases stay float everywhere (`rewrite.check`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx_graphsurgeon as gs

WEIGHTED = ("Conv", "Gemm")  # ops with a weight: Q/DQ on the activation input, the weight per channel
GATES = ("Sigmoid", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean")  # outputs never quantized
SHAPE_ONLY = ("Flatten", "Reshape", "Squeeze", "Unsqueeze")  # looked through to find a pooled input

Edge = tuple[str, int]  # (consumer node name, input index)


@dataclass(frozen=True)
class Level:
    """Where Q/DQ pairs go: on the activation inputs of ``op_types`` (a weighted op's input 0, every
    activation input of the others), never on an input that comes straight from a `GATES` op.
    ``float_first_and_last``: the first conv and the classifier stay float."""

    name: str
    op_types: tuple[str, ...]
    float_first_and_last: bool = False


# Ordered fastest first: `benchmarks/int8_levels.py` (results/int8_levels.md; ParNet-S 224 random weights,
# batch 1, 2 threads, AMD EPYC without VNNI, each CPU flavor on its engine, one interleaved run):
#                        ORT / its fp32   OpenVINO / its fp32   digits logits max error / range
#   level 0                  0.661            0.534                 0.027 (ORT), 0.023 (OpenVINO)
#   level 1                  0.816            0.539                 0.026, 0.024
#   level 2                  1.143            0.565                 0.032, 0.022
# ORT fuses DQ -> Conv -> Q into its u8s8 QLinearConv only when the Conv's output is quantized. With
# pairs on Conv inputs alone (TensorRT's strictest placement) it runs float convs plus Q/DQ: slower than
# fp32. Level 0 also puts pairs on the Add and Mul inputs that Convs feed, which gives ORT its int8
# convs (TensorRT fuses Conv + Q into an int8-output conv); OpenVINO is fast at every level. The later
# levels are fallbacks for models whose accuracy level 0 does not keep (digits top-1 is the same at
# every level). A quantized first conv (3 input channels) was slower on ORT and tripled the error in a
# development run (not kept), so every level keeps it, and the classifier, in float.
POOLED = ("GlobalAveragePool", "BatchNormalization")  # the other readers of a block's input: see `LEVELS`
LEVELS = (
    Level("Conv/Gemm, Add, Mul, pool and BatchNormalization inputs (first conv and classifier in float)",
          ("Conv", "Gemm", "Add", "Mul", *POOLED), float_first_and_last=True),
    Level("Conv/Gemm, Add, pool and BatchNormalization inputs (Mul, first conv and classifier in float)",
          ("Conv", "Gemm", "Add", *POOLED), float_first_and_last=True),
    Level("Conv/Gemm inputs only (elementwise ops, first conv and classifier in float)", ("Conv", "Gemm"),
          float_first_and_last=True),
)


def first_conv_and_classifier(graph: gs.Graph) -> list[str]:
    """Every conv that reads a graph input (one per sensor of a multi-input model; else the first conv)
    and the last Gemm/MatMul (a classifier's head, if there is one)."""
    convs = [n for n in graph.nodes if n.op == "Conv"]
    first = [n for n in convs if n.inputs[0] in graph.inputs] or convs[:1]
    gemms = [n.name for n in graph.nodes if n.op in ("Gemm", "MatMul")]
    return [n.name for n in first] + gemms[-1:]


def _source(tensor: gs.Tensor) -> gs.Node | None:
    """The node that computes ``tensor``, looking through shape-only ops; None for inputs and constants."""
    node = tensor.inputs[0] if tensor.inputs else None
    while node is not None and node.op in SHAPE_ONLY:
        node = node.inputs[0].inputs[0] if node.inputs[0].inputs else None
    return node


def _activation_inputs(node: gs.Node) -> list[int]:
    if node.op in WEIGHTED:
        return [] if isinstance(node.inputs[0], gs.Constant) else [0]
    return [i for i, t in enumerate(node.inputs) if not isinstance(t, gs.Constant) and t.name]


def residual_inputs(node: gs.Node) -> list[int]:
    """An Add's inputs that a weighted op did not produce (TensorRT fuses the Add into the conv that
    produced the other one); the second input when both come from weighted ops."""
    produced = [i for i, t in enumerate(node.inputs) if t.inputs and t.inputs[0].op in WEIGHTED]
    rest = [i for i in range(len(node.inputs)) if i not in produced]
    return rest or produced[1:]


def tensorrt_inputs(graph: gs.Graph, edges: set[Edge]) -> set[Edge]:
    """The subset of ``edges`` TensorRT's Q/DQ guidance wants: the inputs of weighted ops and the residual
    input of each Add ("quantize the residual input in skip-connections"; a pair on the conv-produced input
    would stop TensorRT fusing the Add into that conv). Mul, pooling and BatchNormalization stay float."""
    nodes = {n.name: n for n in graph.nodes}
    return {(name, i) for name, i in edges
            if nodes[name].op in WEIGHTED or (nodes[name].op == "Add" and i in residual_inputs(nodes[name]))}


def onnxruntime_inputs(graph: gs.Graph, edges: set[Edge]) -> set[Edge]:
    """``edges`` without the pool and BatchNormalization inputs: ONNX Runtime runs those ops in float, so
    a pair there is a dequantization more (ParNet-S 224: 1.10x the time; benchmarks/int8_peers.py)."""
    nodes = {n.name: n for n in graph.nodes}
    return {(name, i) for name, i in edges if nodes[name].op not in POOLED}


@dataclass(frozen=True)
class Flavor:
    """One placement of the calibrated graph, for the engines it is made for."""

    name: str
    backends: tuple[str, ...]
    placement: str
    select: Callable[[gs.Graph, set[Edge]], set[Edge]]  # from a level's edges
    unsigned_activations: bool  # uint8 asymmetric (zero point 0 on ReLU outputs); else int8 symmetric
    seven_bit_weights: bool  # x86 int8 kernels without VNNI saturate with 8-bit weights (`int8.quantize`)
    # a quantizer's pair also goes on what Concat/Reshape/... carry into it (`rewrite.quantize_before_movement`),
    # and cuts whose every reader quantizes them cross quantized (`rewrite.quantize_boundaries`)
    quantized_cuts: bool


FLAVORS = (  # the first is the export's own graph files (model.onnx, ...): the C runtime runs it
    Flavor("openvino", ("openvino",), "the level's inputs, the pools' and BatchNormalization's included; uint8 "
           "activations, 7-bit weights; what Concat/Reshape/... only move into a quantizer quantized before it "
           "moves; uint8 cuts", lambda graph, edges: edges, unsigned_activations=True,
           seven_bit_weights=True, quantized_cuts=True),
    Flavor("onnxruntime", ("onnxruntime",), "the level's inputs but the pools' and BatchNormalization's; int8 "
           "symmetric activations (run as uint8, zero point 128), 7-bit weights; float cuts", onnxruntime_inputs,
           unsigned_activations=False, seven_bit_weights=True, quantized_cuts=False),
    Flavor("tensorrt", ("tensorrt",), "TensorRT's Q/DQ guidance: the inputs of weighted ops and the residual input "
           "of each Add; int8 symmetric activations, 8-bit weights; float cuts", tensorrt_inputs,
           unsigned_activations=False, seven_bit_weights=False, quantized_cuts=False),
)


def quantized_inputs(graph: gs.Graph, level: Level) -> tuple[set[Edge], list[str]]:
    """The edges that get a Q/DQ pair at ``level``, and the nodes kept in float on purpose."""
    excluded = first_conv_and_classifier(graph) if level.float_first_and_last else []
    edges: set[Edge] = set()
    for node in graph.nodes:
        if node.op not in level.op_types or node.name in excluded:
            continue
        for i in _activation_inputs(node):
            src = _source(node.inputs[i])
            if src is None or src.op not in GATES:
                edges.add((node.name, i))
    return edges, excluded
