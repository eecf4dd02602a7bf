"""Exact linear-algebra helpers used by the blocks' ``reparameterize()``.

All folds are done in float64 and cast back, so the deploy form matches the
train form to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bn_scale_shift(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(s, t)`` with ``bn(x) == s * x + t`` in eval mode (float64)."""
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    weight = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    bias = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def fold_bn_into_conv(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a BN that follows a bias-free conv: returns ``(kernel, bias)`` in float64."""
    scale, shift = bn_scale_shift(bn)
    return weight.double() * scale.view(-1, 1, 1, 1), shift


def pooled_1x1_to_3x3(kernel_1x1: torch.Tensor) -> torch.Tensor:
    """A 2x2 average pool (stride 2) followed by a 1x1 conv, as a 3x3 stride-2 pad-1 kernel.

    Output pixel (i, j) of the 3x3 conv reads input rows/cols 2i-1..2i+1; the pool reads
    2i..2i+1, i.e. kernel taps 1 and 2. So the 1x1 kernel, divided by 4, fills the
    bottom-right 2x2 of the 3x3 kernel.
    """
    out = kernel_1x1.new_zeros(*kernel_1x1.shape[:2], 3, 3)
    out[:, :, 1:, 1:] = kernel_1x1 / 4.0
    return out


def plain_1x1_to_3x3(kernel_1x1: torch.Tensor) -> torch.Tensor:
    return F.pad(kernel_1x1, [1, 1, 1, 1])


def scale_conv_input(weight: torch.Tensor, scale: torch.Tensor, groups: int) -> torch.Tensor:
    """Return ``w'`` with ``conv(x * scale, w) == conv(x, w')`` (per input channel, grouped conv)."""
    co, ci_per_group = weight.shape[:2]
    w = weight.reshape(groups, co // groups, ci_per_group, *weight.shape[2:])
    s = scale.to(weight.dtype).reshape(groups, 1, ci_per_group, *([1] * (weight.dim() - 2)))
    return (w * s).reshape(weight.shape)


def conv_of_constant(weight: torch.Tensor, value: torch.Tensor, groups: int) -> torch.Tensor:
    """``conv(value broadcast over space)`` for a 1x1 kernel: the bias a per-channel shift adds."""
    assert weight.shape[-2:] == (1, 1), "only exact for 1x1 kernels"
    return F.conv2d(value.to(weight.dtype).view(1, -1, 1, 1), weight, groups=groups).flatten()


def permute_conv_input(weight: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Return ``w'`` with ``conv(x[:, perm], w) == conv(x, w')`` (groups == 1)."""
    out = torch.empty_like(weight)
    out[:, perm] = weight
    return out


def channel_shuffle_perm(channels: int, groups: int) -> torch.Tensor:
    """Indices ``p`` such that ``channel_shuffle(x)[:, i] == x[:, p[i]]``."""
    return torch.arange(channels).view(groups, channels // groups).t().reshape(-1)


def make_conv(weight: torch.Tensor, bias: torch.Tensor | None, *, stride: int, padding: int,
              groups: int, dtype: torch.dtype) -> nn.Conv2d:
    co, cig, kh, _ = weight.shape
    conv = nn.Conv2d(cig * groups, co, kh, stride=stride, padding=padding, groups=groups,
                     bias=bias is not None)
    conv.weight.data = weight.to(dtype).contiguous()
    if bias is not None:
        conv.bias.data = bias.to(dtype).contiguous()
    return conv
