"""Each export subgraph as a function of the deploy-form model: the model's own cut plan
(``ParNet.cut_plan``), the same declaration the exporter cut the ONNX graph along."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...errors import ConfigError, ExportError
from ...models import ParNet

Slice = Callable[..., list[torch.Tensor]]


def slice_of(model: ParNet, subgraph: str, split: str) -> Slice:
    """Inputs and outputs in the order of the subgraph's spec."""
    if subgraph == "model":
        return lambda image: [model(image)]
    try:
        plan = model.cut_plan(split)
    except ConfigError as e:
        raise ExportError(str(e)) from e
    cut = next((c for c in plan if c.name == subgraph), None)
    if cut is None:
        raise ExportError(f"no PyTorch slice for subgraph {subgraph!r} of a {split} split")
    return cut.run
