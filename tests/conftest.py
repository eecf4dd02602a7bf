import numpy as np
import pytest
import torch
from torch import nn

import parnet_deploy as pd

# Small widths keep the suite fast; the structure (blocks, strides, groups, fusions) is the real one.
TINY = dict(planes=(16, 32, 64, 96))
TINY_SMALL_INPUT = dict(planes=(8, 16, 32, 32))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters (a fresh BN is an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.randn(c, generator=g) * 0.5 + 1.0)
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
    return model


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
