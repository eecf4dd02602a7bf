"""The ParNet model family. Configs and the registry import no PyTorch; the model is lazy."""

from . import config as _variants  # noqa: F401  (registers the named variants)
from ._registry import list_models, model_config
from .config import ACTIVATIONS, ParNetConfig

_LAZY = {"ParNet": ".parnet", "create_model": "._factory"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ACTIVATIONS", "ParNet", "ParNetConfig", "create_model", "list_models", "model_config"]
