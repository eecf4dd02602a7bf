"""Each export subgraph as a function of the deploy-form model: the same cut points as
``export/graph.py`` (``x{k}`` into stream k, ``y{k}`` out of it)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...errors import ExportError
from ...models import ParNet

Slice = Callable[..., list[torch.Tensor]]


def slice_of(model: ParNet, subgraph: str, split: str) -> Slice:
    """Inputs and outputs in the order of the subgraph's spec."""
    if subgraph == "model":
        return lambda image: [model(image)]
    if subgraph == "stem" and split == "shared":
        return lambda image: model.stem(image)
    if subgraph == "fusion":
        return lambda y0, y1, y2: [model.fusion(y0, y1, y2)]
    if subgraph.startswith("stream") and subgraph[6:].isdigit() and int(subgraph[6:]) < len(model.streams):
        k = int(subgraph[6:])
        if split == "shared":
            return lambda x: [model.streams[k](x)]

        def replicated(image: torch.Tensor) -> list[torch.Tensor]:  # recomputes its stem prefix
            x = image
            for init in model.inits[:k + 1]:
                x = init(x)
            return [model.streams[k](x)]
        return replicated
    raise ExportError(f"no PyTorch slice for subgraph {subgraph!r} of a {split} split")
