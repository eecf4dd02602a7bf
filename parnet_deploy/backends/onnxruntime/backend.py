"""The ONNX Runtime :class:`Backend`: builder and runner halves."""

from __future__ import annotations

from pathlib import Path

from ...artifacts.engines_manifest import BuildOptions, DeviceRecord
from ...artifacts.export_manifest import SubgraphSpec
from ...errors import UserError
from ..base import Backend, Runner
from . import INFO, builder
from .iobinding import IoBindingRunner, pinned_memory_info
from .runner import OnnxRuntimeRunner, create_session, ort, providers_for


class OnnxRuntimeBackend(Backend, info=INFO):
    @classmethod
    def version(cls) -> str:
        return ort().__version__

    @classmethod
    def build_impl(cls, source: Path, engine: Path, device: DeviceRecord, options: BuildOptions) -> None:
        builder.build(source, engine, device, options)

    def __init__(self, threads: int | None = None, device: str | None = None, precision: str = "fp32"):
        super().__init__(threads, device, precision)
        if precision not in self.precisions:
            raise UserError(f"onnxruntime runs {', '.join(self.precisions)}, not {precision}")
        self.providers = providers_for(self.device)
        self.device_id = int(self.device.partition(":")[2] or 0) if self.device != "cpu" else 0

    @property
    def parallelism(self) -> int:
        return self.threads if self.device == "cpu" else 4

    def load(self, path: Path, spec: SubgraphSpec, concurrency: int = 1) -> Runner:
        # sessions that run at the same time share the cores instead of oversubscribing them
        threads = max(1, self.threads // max(1, concurrency))
        session = create_session(path, threads, self.providers)
        if self.device == "cpu":
            return OnnxRuntimeRunner(session, spec)
        return IoBindingRunner(session, spec, "cuda", self.device_id, pinned_memory_info(ort()))

    def describe(self) -> dict[str, str]:
        return {"backend": "onnxruntime", "version": self.version(), "device": self.device,
                "providers": ",".join(p if isinstance(p, str) else p[0] for p in self.providers),
                "intra_op_threads": str(self.threads), "allow_spinning": "0", "execution_mode": "sequential",
                **({"io_binding": "device buffers, host staging "
                    + ("pinned" if pinned_memory_info(ort()) is not None else "pageable")}
                   if self.device != "cpu" else {})}


__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeRunner"]
