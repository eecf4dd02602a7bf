"""The registry of backends: one package each, whose ``__init__`` declares a :class:`BackendInfo`
(name and capabilities) and whose ``backend`` module holds the :class:`Backend` subclass.

The registry finds the packages, reads their declarations and derives the rest; a backend's
implementation (and its library: openvino, tensorrt, torch) is imported only when that backend
is asked for, and then a missing library says what to install.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from ..errors import UserError
from .base import Backend, LoadRunner, Runner, StageTime
from .info import BackendInfo


@functools.cache
def registry() -> dict[str, BackendInfo]:
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            info = importlib.import_module(f"{__name__}.{module.name}").INFO
            found[info.name] = info
    return dict(sorted(found.items()))


BACKENDS = tuple(registry())
ENGINE_BACKENDS = tuple(name for name, info in registry().items() if info.builds_engines)  # what parnet-build uses


def backend_class(name: str) -> type[Backend]:
    if name not in registry():
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return getattr(importlib.import_module(f"{__name__}.{name}.backend"), registry()[name].cls)


def get_backend(name: str, threads: int | None = None, device: str | None = None, precision: str = "fp32") -> Backend:
    """A backend bound to one device and a thread budget, ready to ``load`` subgraph files."""
    cls = backend_class(name)
    cls.version()  # a missing library fails here, with its install hint
    return cls(threads=threads, device=device, precision=precision)


def available_backends(kind: str = "cpu") -> list[str]:
    """Engine backends whose library is installed and which run on a device of ``kind`` here
    (what ``--backend auto`` builds with and what comparisons list; torch runs exports only)."""
    return [n for n in ENGINE_BACKENDS if kind in registry()[n].device_kinds and backend_class(n).available()]


__all__ = ["BACKENDS", "ENGINE_BACKENDS", "Backend", "BackendInfo", "LoadRunner", "Runner", "StageTime",
           "available_backends", "backend_class", "get_backend", "registry"]
