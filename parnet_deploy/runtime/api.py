"""``parnet_deploy.runtime.load(path)``: a ready-to-call runner over an export directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..export.manifest import ExportManifest, load_manifest
from .backends import get_backend
from .executors import EXECUTORS, StageTime

MODES = tuple(EXECUTORS)


class ParnetRunner:
    """``runner(x)``: float32 ``(1, 3, H, W)`` image → logits ``(1, classes)``.

    Thread safety: one runner may be called from several threads at once (ONNX Runtime
    sessions are thread-safe and every call keeps its own intermediate tensors).
    Usable as a context manager; :meth:`close` releases the sessions.
    """

    def __init__(self, manifest: ExportManifest, directory: Path, backend: str = "onnxruntime",
                 mode: str = "whole", threads: int | None = None, device: str | None = None):
        if mode not in EXECUTORS:
            raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.manifest = manifest
        self.directory = directory
        self.mode = mode
        self.backend = get_backend(backend, threads=threads, device=device)
        self.executor = EXECUTORS[mode](manifest, directory, self.backend)
        self.input_spec = manifest.input
        self.output_spec = manifest.output

    # -- validation ----------------------------------------------------------------------
    def check_input(self, x: np.ndarray) -> None:
        spec = self.input_spec
        if not isinstance(x, np.ndarray):
            raise UserError(f"input must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise UserError(f"input dtype must be float32, got {x.dtype}")
        if tuple(x.shape) != tuple(spec.shape):
            raise UserError(f"input shape must be {tuple(spec.shape)} (N, C, H, W), got {tuple(x.shape)}")
        if not x.flags.c_contiguous:
            raise UserError("input must be C-contiguous (use np.ascontiguousarray)")

    # -- running ---------------------------------------------------------------------------
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_input(feeds.get(self.input_spec.name))
        return self.executor.infer(feeds)

    def infer_timed(self, x: np.ndarray) -> tuple[np.ndarray, list[StageTime]]:
        self.check_input(x)
        out, times = self.executor.infer_timed({self.input_spec.name: x})
        return out[self.output_spec.name], times

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.check_input(x)
        return self.executor.infer({self.input_spec.name: x})[self.output_spec.name]

    def close(self) -> None:
        self.executor.close()

    def __enter__(self) -> "ParnetRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load(path: str | Path, backend: str = "onnxruntime", mode: str = "whole", threads: int | None = None,
         device: str | None = None) -> ParnetRunner:
    """Open an export directory (hashes verified against its manifest) and prepare a runner.

    mode: ``whole`` (one session on ``model.onnx``) or ``streams`` (one session per
    subgraph, independent ones concurrently). threads: intra-op threads in all (default:
    all cores). device: ``cpu`` (default) or ``cuda[:N]``.
    """
    directory = Path(path)
    manifest = load_manifest(directory)
    return ParnetRunner(manifest, directory, backend=backend, mode=mode, threads=threads, device=device)
