"""What this machine is: CPU model and instruction-set flags (recorded with engines and benchmarks)."""

from __future__ import annotations

import functools
import platform
import re


@functools.cache
def _cpuinfo() -> dict[str, str]:
    try:
        with open("/proc/cpuinfo") as f:
            out: dict[str, str] = {}
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in out:
                    out[key.strip()] = value.strip()
            return out
    except OSError:
        return {}


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    return frozenset(_cpuinfo().get("flags", "").split())


def native_bf16() -> bool:
    """bf16 arithmetic in hardware (AVX512-BF16 or AMX-BF16); elsewhere bf16 is emulated and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def slug(text: str) -> str:
    """A name safe in file names and device tags: ``NVIDIA H100 80GB`` → ``nvidia-h100-80gb``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
