"""``create_model(name, **overrides)``: a registered variant's config → the PyTorch model."""

from __future__ import annotations

from typing import Any

from ._registry import model_config
from .parnet import ParNet


def create_model(name: str, **overrides: Any) -> ParNet:
    """Build a registered variant in train form (eval mode), e.g. ``create_model('parnet_s', act='silu')``."""
    return ParNet(model_config(name, **overrides)).eval()
