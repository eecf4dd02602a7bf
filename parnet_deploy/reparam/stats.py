"""Parameter counts, FLOPs and depth (longest chain of conv/linear layers)."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from ..errors import ToolchainError

_LAYERS = (nn.Conv2d, nn.Linear)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def depth(model: nn.Module) -> int:
    """Longest chain of conv/linear layers from input to output, read off the traced graph."""
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    level: dict[torch.fx.Node, int] = {}
    for node in graph.nodes:
        inputs = [level[n] for n in node.all_input_nodes]
        here = 1 if node.op == "call_module" and isinstance(modules[node.target], _LAYERS) else 0
        level[node] = max(inputs, default=0) + here
        if node.op == "output":
            return level[node]
    raise ToolchainError("torch.fx traced a graph with no output")


def flops(model: nn.Module, resolution: int | tuple[int, int]) -> int:
    """FLOPs (2 x multiply-accumulates) of conv and linear layers for one image, as in the paper's
    Table 2 (ParNet-S 224: 9.7B with the paper's widths)."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    total = 0

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.weight[0].numel()  # (ci / groups) * kh * kw
            total += 2 * k * output.numel()
        else:
            total += 2 * module.weight.numel() * (output.numel() // output.shape[-1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _LAYERS)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w))
    finally:
        for handle in handles:
            handle.remove()
    return total
