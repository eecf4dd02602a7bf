"""The registry of backends: one folder each (builder + runner behind :class:`Backend`).

Backends are imported when asked for, so a missing optional library (openvino, tensorrt)
costs nothing until it is used, and then says what to install.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UserError
from .base import Backend, LoadRunner, Runner, StageTime


def _onnxruntime() -> type[Backend]:
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend


def _openvino() -> type[Backend]:
    from .openvino import OpenVinoBackend

    return OpenVinoBackend


def _tensorrt() -> type[Backend]:
    from .tensorrt import TensorRTBackend

    return TensorRTBackend


def _torch() -> type[Backend]:
    from .torch import TorchBackend

    return TorchBackend


_REGISTRY: dict[str, Callable[[], type[Backend]]] = {
    "onnxruntime": _onnxruntime, "openvino": _openvino, "tensorrt": _tensorrt, "torch": _torch,
}
BACKENDS = tuple(_REGISTRY)
ENGINE_BACKENDS = ("onnxruntime", "openvino", "tensorrt")  # what parnet-build builds with


def backend_class(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return _REGISTRY[name]()


def get_backend(name: str, threads: int | None = None, device: str | None = None, precision: str = "fp32") -> Backend:
    """A backend bound to one device and a thread budget, ready to ``load`` subgraph files."""
    cls = backend_class(name)
    cls.version()  # a missing library fails here, with its install hint
    return cls(threads=threads, device=device, precision=precision)


def available_backends(kind: str = "cpu") -> list[str]:
    """Engine backends whose library is installed and which run on a device of ``kind`` here
    (what ``--backend auto`` builds with and what comparisons list; torch runs exports only)."""
    return [n for n in ENGINE_BACKENDS if kind in backend_class(n).device_kinds and backend_class(n).available()]


__all__ = ["BACKENDS", "ENGINE_BACKENDS", "Backend", "LoadRunner", "Runner", "StageTime", "available_backends", "backend_class",
           "get_backend"]
