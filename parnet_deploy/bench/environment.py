"""What a benchmark ran on: recorded beside every result."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from ..hardware import cpu_model


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(extra: dict | None = None) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libs = {d: _version(d) for d in ("parnet-deploy", "onnxruntime", "onnx", "torch", "numpy", "openvino")}
    return {"cpu": cpu_model(), "cores": cores, "machine": platform.machine(), "os": platform.platform(),
            "python": platform.python_version(), "libraries": {k: v for k, v in libs.items() if v},
            **(extra or {})}
