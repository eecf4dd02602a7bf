"""The TensorRT :class:`Backend` (never run here: no GPU, TensorRT not installable)."""

from __future__ import annotations

from pathlib import Path

from ...artifacts.engines_manifest import BuildOptions, DeviceRecord
from ...artifacts.export_manifest import ExportManifest, SubgraphSpec
from ...errors import UserError
from ...hardware import slug
from ..base import Backend, LoadRunner
from . import INFO, builder


def cuda_devices() -> list[DeviceRecord]:  # pragma: no cover - needs a GPU
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        uuid = str(getattr(props, "uuid", "")) or None
        out.append(DeviceRecord(tag=f"cuda{index}-{slug(props.name)}-sm{props.major}{props.minor}", kind="cuda",
                                name=props.name, index=index, compute_capability=f"{props.major}.{props.minor}",
                                uuid=uuid))
    return out


class TensorRTBackend(Backend, info=INFO):  # pragma: no cover - needs a GPU
    @classmethod
    def available(cls) -> bool:
        return super().available() and bool(cuda_devices())

    @classmethod
    def version(cls) -> str:
        return builder.version()

    @classmethod
    def devices(cls) -> list[DeviceRecord]:
        return cuda_devices()

    @classmethod
    def build_impl(cls, source: Path, engine: Path, device: DeviceRecord, options: BuildOptions) -> None:
        builder.build(source, engine, device, options)

    def __init__(self, threads: int | None = None, device: str | None = None, precision: str = "fp32"):
        super().__init__(threads, device or "cuda:0", precision)
        if not self.device.startswith("cuda") or not (self.device.partition(":")[2] or "0").isdigit():
            raise UserError(f"TensorRT runs on CUDA devices (cuda:N), not {self.device!r}")
        self.index = int(self.device.partition(":")[2] or 0)

    @property
    def parallelism(self) -> int:
        return 4  # independent CUDA streams overlap on one GPU

    def load(self, path: Path, spec: SubgraphSpec, concurrency: int = 1):
        from .runner import TensorRTRunner

        return TensorRTRunner(path, spec, self.index)

    def executor(self, mode: str, manifest: ExportManifest, load_runner: LoadRunner, cuda_graph: bool = False):
        if mode not in ("whole", "streams"):
            return super().executor(mode, manifest, load_runner, cuda_graph)
        from ..cuda_streams import CudaStreamsExecutor

        return CudaStreamsExecutor(manifest, load_runner, cuda_graph, whole=mode == "whole")

    def describe(self) -> dict[str, str]:
        import torch

        return {"backend": "tensorrt", "version": self.version(), "device": f"cuda:{self.index}",
                "gpu": torch.cuda.get_device_name(self.index)}


__all__ = ["TensorRTBackend", "cuda_devices"]
