"""What the C functions do, in Python (the embedded side of ``libparnet_rt.so``).

The cffi glue (``build.py``) converts pointers and calls these; everything that can be
tested without a C compiler lives here: option parsing, error → status mapping, state.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..errors import ArtifactMismatchError, ArtifactNotFoundError, ExportError, UserError

ABI_VERSION = 1
OK, E_INVALID_ARG, E_NOT_FOUND, E_INCOMPATIBLE, E_RUNTIME, E_NO_MEMORY = range(6)
OPTION_KEYS = {"backend": str, "mode": str, "threads": int, "device": str}

_tls = threading.local()


def set_error(message: str) -> None:
    _tls.message = message


def last_error() -> str:
    return getattr(_tls, "message", "")


def parse_options(text: str | None) -> dict:
    """``"key=value;key=value"`` → keyword arguments of ``runtime.load``."""
    out: dict = {}
    for item in (text or "").split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in OPTION_KEYS or not value:
            raise UserError(f"bad option {item.strip()!r}; expected key=value with key in {', '.join(OPTION_KEYS)}")
        try:
            out[key] = OPTION_KEYS[key](value)
        except ValueError:
            raise UserError(f"bad option {item.strip()!r}: {key} must be an integer") from None
    return out


def status_of(exc: BaseException) -> int:
    if isinstance(exc, ArtifactNotFoundError):
        return E_NOT_FOUND
    if isinstance(exc, ArtifactMismatchError):
        return E_INCOMPATIBLE
    from ..artifacts.engines_manifest import EngineIncompatibleError

    if isinstance(exc, (EngineIncompatibleError, ExportError)):
        return E_INCOMPATIBLE  # the artifact is unusable: malformed, tampered or built for elsewhere
    if isinstance(exc, MemoryError):
        return E_NO_MEMORY
    if isinstance(exc, UserError):
        return E_INVALID_ARG
    return E_RUNTIME


@dataclass
class Handle:
    runner: object
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    last_latency_us: float = float("nan")
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def input_len(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_len(self) -> int:
        return int(np.prod(self.output_shape))


def open_handle(path: str, options: str | None) -> Handle:
    from ..runtime import load

    runner = load(path, **parse_options(options))
    return Handle(runner, tuple(runner.input_spec.shape), tuple(runner.output_spec.shape))


def infer(handle: Handle, x: np.ndarray) -> np.ndarray:
    t0 = time.perf_counter()
    out = handle.runner(x.reshape(handle.input_shape))
    handle.last_latency_us = (time.perf_counter() - t0) * 1e6
    return out


def version() -> str:
    return __version__
