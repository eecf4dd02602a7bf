"""Registry of named ParNet variants: names → config functions. Imports no model code (timm's
``_registry`` / ``_factory`` split); ``_factory.create_model`` builds the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

_ENTRYPOINTS: dict[str, Callable[..., Any]] = {}


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    _ENTRYPOINTS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_ENTRYPOINTS)


def model_config(name: str, **overrides: Any):
    """The :class:`ParNetConfig` of a registered variant, with ``overrides`` applied."""
    if name not in _ENTRYPOINTS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    try:
        return _ENTRYPOINTS[name](**overrides)
    except TypeError as e:
        raise ConfigError(f"bad option for {name}: {e}") from e
