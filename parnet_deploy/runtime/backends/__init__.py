"""Backends: a loader turns one subgraph file into a runner; runners execute it.

The runtime knows nothing about PyTorch; backends are imported lazily.
"""

from __future__ import annotations

from .base import Backend, SubgraphRunner

BACKENDS = ("onnxruntime", "tensorrt")


def get_backend(name: str, threads: int | None = None, device: str | None = None) -> Backend:
    from ...errors import UserError

    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(threads=threads, device=device)
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(threads=threads, device=device)
    raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "SubgraphRunner", "get_backend"]
