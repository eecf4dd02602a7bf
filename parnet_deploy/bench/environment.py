"""What a benchmark ran on: recorded beside every result."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from ..hardware import cpu_model, kernel_flags


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(extra: dict | None = None) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libs = {d: _version(d) for d in ("parnet-deploy", "onnxruntime", "onnx", "torch", "numpy", "openvino")}
    return {"cpu": cpu_model(), "cpu_flags": list(kernel_flags()), "cores": cores, "machine": platform.machine(),
            "os": platform.platform(), "python": platform.python_version(),
            "libraries": {k: v for k, v in libs.items() if v},
            **(extra or {})}


def describe_cpu(env: dict) -> str:
    """``AMD EPYC (avx2, avx512f, avx512_vnni)``: the model and the kernel-relevant flags of `environment`."""
    flags = env.get("cpu_flags") or []
    return f"{env['cpu']} ({', '.join(flags)})" if flags else env["cpu"]
