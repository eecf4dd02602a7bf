"""What this machine is: CPU model and instruction-set flags (recorded with engines and benchmarks)."""

from __future__ import annotations

import functools
import platform
import re

# The native library (capi/src/policy.cpp) decides the same way: tests/test_capi_policy.py holds them equal.
CPUINFO = "/proc/cpuinfo"
_WS = " \t\n\r\v\f"  # ASCII whitespace, as the C++ side strips and splits


def parse_cpuinfo(text: str) -> dict[str, str]:
    """``/proc/cpuinfo`` text as key → value: each line split at its first ``:``, key and value
    stripped, the first value of a key kept (the first processor's)."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip(_WS) not in out:
            out[key.strip(_WS)] = value.strip(_WS)
    return out


@functools.cache
def _cpuinfo() -> dict[str, str]:
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace", newline="\n") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        return {}


def _fields(cpuinfo: str | None) -> dict[str, str]:
    return _cpuinfo() if cpuinfo is None else parse_cpuinfo(cpuinfo)


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU name engines record: the first ``model name``, else (arm64 has none) the machine name
    (``uname -m``). ``cpuinfo``: text to read instead of this machine's ``/proc/cpuinfo``."""
    return _fields(cpuinfo).get("model name") or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    return frozenset(t for t in re.split(f"[{_WS}]+", _fields(cpuinfo).get("flags", "")) if t)


# the flags that change which int8/bf16 kernels oneDNN picks (a benchmark's ratios depend on them: without
# VNNI, uint8 x int8 products pass through vpmaddubsw; with AVX512-BF16, float layers may run in bf16)
KERNEL_FLAGS = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def kernel_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """Which of `KERNEL_FLAGS` this CPU has, in that order."""
    flags = cpu_flags(cpuinfo)
    return tuple(f for f in KERNEL_FLAGS if f in flags)


def native_bf16(cpuinfo: str | None = None) -> bool:
    """bf16 arithmetic in hardware (AVX512-BF16 or AMX-BF16); elsewhere bf16 is emulated and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags(cpuinfo))


def slug(text: str) -> str:
    """A name safe in file names and device tags: ``NVIDIA H100 80GB`` → ``nvidia-h100-80gb``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
