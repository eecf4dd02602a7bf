"""Where a model family may be cut, declared once (as timm models declare ``feature_info``).

A model's ``cut_plan(split)`` lists its subgraphs in a valid execution order, each with the tensors it
reads and writes and the PyTorch computation between them. The exporter names those tensors in the
ONNX graph and cuts along them; the torch backend runs the same computations. Neither matches names.
No PyTorch here: the configs and the registry import without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

IMAGE = "image"  # the graph input of an image model
LOGITS = "logits"  # the graph output of a classifier
SPLITS = ("replicated", "shared")  # how the streams get their input: each from the image, or from one stem


@dataclass(frozen=True)
class Cut:
    """One subgraph of a split."""

    name: str
    inputs: tuple[str, ...]  # tensor names, in the order ``run`` takes them
    outputs: tuple[str, ...]  # tensor names, in the order ``run`` returns them
    stream: int | None  # k for the subgraph of stream k; None for a shared part (stem, fusion)
    run: Callable[..., list[Any]]  # tensors in → list of tensors out, on the model that made the plan


def cut_tensors(plan: tuple[Cut, ...]) -> tuple[str, ...]:
    """Every tensor a plan cuts at (neither a graph input nor a graph output), in order of appearance."""
    produced = [name for cut in plan for name in cut.outputs]
    read = {name for cut in plan for name in cut.inputs}
    return tuple(name for name in produced if name in read)
