"""How OpenVINO is asked to compile (batch-1 latency), and the check that it did.

Facts this relies on (OpenVINO 2026.4, CPU plugin):

- Without a hint the CPU plugin computes in bf16 on any CPU with AVX512-BF16 or AMX, and an
  ``f16`` hint silently becomes bf16 on CPUs without native fp16: the hint is always explicit.
- ``ENABLE_CPU_PINNING`` defaults to on, and every compiled model pins its threads to the same
  first cores: two 1-thread subgraphs running at once share one core (measured 2x slower on 2
  cores); unpinned, the OS spreads them.
- A requested ``INFERENCE_NUM_THREADS`` above the core count is capped to it.
"""

from __future__ import annotations

import functools
from typing import Any

from ... import hardware
from ...errors import RuntimeFailure, UserError
from . import INFO

# what the graph computes in follows the export (fp16 casts, Q/DQ); the hint only governs float math
PRECISION_HINTS = {"fp32": "f32", "fp16": "f32", "int8": "f32", "bf16": "bf16"}
OTHER_DEVICES = ("GPU", "NPU")


def openvino() -> Any:
    try:
        import openvino
    except (ImportError, OSError) as e:
        raise INFO.missing() from e
    return openvino


@functools.cache
def core() -> Any:
    """One Core per process (thread-safe; compiled models do not depend on it staying alive)."""
    return openvino().Core()


def device_name(device: str) -> str:
    """``cpu`` → ``CPU``; OpenVINO's own names (``GPU``, ``GPU.1``, ``NPU``) pass through, untested."""
    name = device.upper()
    if name == "CPU" or name.partition(".")[0] in OTHER_DEVICES:
        return name
    raise UserError(f"openvino: unknown device {device!r}; use cpu (or an OpenVINO device name: GPU, GPU.1, NPU)")


def precision_hint(precision: str, device: str) -> str:
    if precision not in PRECISION_HINTS:
        raise UserError(f"openvino: unknown precision {precision!r}; use one of {', '.join(PRECISION_HINTS)}")
    if precision == "bf16" and device == "CPU" and not hardware.native_bf16():
        raise UserError(f"openvino: bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX-BF16); "
                        f"{hardware.cpu_model()} would emulate it slowly; use fp32 or int8")
    return PRECISION_HINTS[precision]


def compile_config(device: str, threads: int, hint: str) -> dict[str, str]:
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": hint}
    if device == "CPU":
        config |= {"INFERENCE_NUM_THREADS": str(threads), "ENABLE_CPU_PINNING": "NO"}
    return config


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "YES" if value else "NO"
    get_type_name = getattr(value, "get_type_name", None)  # openvino.Type: f32, bf16
    return get_type_name() if callable(get_type_name) else str(value)


def applied(compiled: Any, config: dict[str, str], where: str) -> dict[str, str]:
    """What ``compiled`` reports for each key of ``config``; raises unless it is what was asked."""
    got = {key: _text(compiled.get_property(key)) for key in config}
    for key, want in config.items():
        ok = 1 <= int(got[key]) <= int(want) if key == "INFERENCE_NUM_THREADS" else got[key] == want
        if not ok:
            raise RuntimeFailure(f"{where}: OpenVINO did not apply {key}={want} (the compiled model says {got[key]})")
    return got


def reason(e: Exception) -> str:
    """OpenVINO's errors are a stack of 'Exception from <file>' lines; the last line says why."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__
