"""``parnet_deploy.runtime.load(path)``: a ready-to-call runner over an export or engine directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..export.manifest import ExportManifest, SubgraphSpec, load_manifest
from .backends import get_backend
from .executors import EXECUTORS, StageTime

MODES = (*EXECUTORS, "distributed")


class ParnetRunner:
    """``runner(x)``: float32 ``(1, 3, H, W)`` image → logits ``(1, classes)``.

    Thread safety: one runner may be called from several threads at once (ONNX Runtime
    sessions are thread-safe and every call keeps its own intermediate tensors; the
    distributed executor serialises calls). Usable as a context manager; :meth:`close`
    releases sessions and worker processes.
    """

    def __init__(self, manifest: ExportManifest, directory: Path, backend: str = "onnxruntime",
                 mode: str = "whole", threads: int | None = None, device: str | None = None,
                 placement: dict[str, str] | None = None, devices: dict[str, str] | None = None,
                 timeout_s: float = 30.0):
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.manifest = manifest
        self.directory = directory
        self.mode = mode
        # one backend per device the subgraphs are placed on (export directories: just one)
        self.placement = placement or {s.name: "default" for s in (manifest.whole, *manifest.subgraphs)}
        device_of = devices or {"default": device}
        self.backends = {tag: get_backend(backend, threads=threads, device=device_of[tag])
                         for tag in sorted(set(self.placement.values()))}
        self.backend = self.backends[self.placement[manifest.whole.name]]
        if mode == "distributed":
            from .distributed import DistributedExecutor

            self.executor = DistributedExecutor(manifest, directory, backend, threads=threads,
                                                placement=placement, devices=devices, timeout_s=timeout_s)
        elif mode == "streams" and backend == "tensorrt":
            from .cuda_executor import CudaStreamsExecutor

            self.executor = CudaStreamsExecutor(manifest, self._load_runner)
        else:
            parallelism = sum(b.parallelism for b in self.backends.values())
            self.executor = EXECUTORS[mode](manifest, self._load_runner, parallelism)
        self.input_spec = manifest.input
        self.output_spec = manifest.output

    def _load_runner(self, spec: SubgraphSpec, concurrency: int):
        backend = self.backends[self.placement[spec.name]]
        return backend.load(self.directory / spec.file, spec, concurrency=concurrency)

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


def load(path: str | Path, backend: str | None = None, mode: str = "whole", threads: int | None = None,
         device: str | None = None, timeout_s: float = 30.0) -> ParnetRunner:
    """Open an export directory (``parnet-export``) or an engine directory (``parnet-build``).

    Every file's sha256 is checked against the directory's manifest; engines are also
    checked against this machine (backend version, GPU compute capability / CPU model).

    backend: ``onnxruntime`` (default for exports) or ``tensorrt``; engine directories name
    their own. mode: ``whole`` (one session on the whole graph), ``streams`` (one session per
    subgraph, independent ones concurrently when the cores allow) or ``distributed`` (one
    process per device, torch.distributed). threads: intra-op threads in all (default: all
    cores). device: ``cpu`` (default) or ``cuda[:N]`` for exports. timeout_s: distributed only,
    how long a call waits for a rank before raising.
    """
    from ..engines.manifest import is_engine_dir

    directory = Path(path)
    if is_engine_dir(directory):
        from ..engines.loading import open_engines

        return open_engines(directory, backend=backend, mode=mode, threads=threads, timeout_s=timeout_s)
    if backend == "tensorrt":
        raise UserError(f"{directory} is an export (ONNX); TensorRT runs engines: "
                        f"parnet-build {directory} --backend tensorrt, then load engines/<name>")
    manifest = load_manifest(directory)
    return ParnetRunner(manifest, directory, backend=backend or "onnxruntime", mode=mode, threads=threads,
                        device=device, timeout_s=timeout_s)
