"""parnet-deploy: ParNet checkpoints to the fastest batch-1 inference.

Names are resolved lazily so that ``parnet_deploy.runtime`` works without importing PyTorch.
"""

from __future__ import annotations

import importlib

from .errors import ParnetError
from .version import __version__

_LAZY = {
    "ParNet": "models", "ParNetConfig": "models", "create_model": "models", "list_models": "models",
    "count_params": "reparam", "depth": "reparam", "flops": "reparam", "official_fuse": "reparam",
    "reparameterize": "reparam", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
}

__all__ = ["ParnetError", "__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'parnet_deploy' has no attribute {name!r}")
