"""OpenVINO backend: CPU engines as compiled blobs, tuned for batch-1 latency (one stream)."""

from __future__ import annotations

from pathlib import Path

from ...artifacts.engines_manifest import BuildOptions, DeviceRecord
from ...artifacts.export_manifest import ExportManifest, SubgraphSpec
from ..base import Backend, Executor, LoadRunner, concurrent_subgraphs
from . import INFO, builder
from .config import compile_config, device_name, openvino, precision_hint
from .runner import OpenVinoRunner


class OpenVinoBackend(Backend, info=INFO):
    @classmethod
    def version(cls) -> str:
        return str(openvino().__version__)

    @classmethod
    def build_impl(cls, source: Path, engine: Path, device: DeviceRecord, options: BuildOptions) -> None:
        builder.build(source, engine, device, options)

    def __init__(self, threads: int | None = None, device: str | None = None, precision: str = "fp32"):
        super().__init__(threads, device, precision)
        self.device_name = device_name(self.device)
        self.hint = precision_hint(precision, self.device_name)

    def load(self, path: Path, spec: SubgraphSpec, concurrency: int = 1) -> OpenVinoRunner:
        """An ``.onnx`` file is compiled here; anything else is a blob written by :meth:`build`."""
        path = Path(path)
        # subgraphs that run at the same time share the cores instead of oversubscribing them
        config = compile_config(self.device_name, max(1, self.threads // max(1, concurrency)), self.hint)
        if path.suffix != ".onnx":
            return OpenVinoRunner(builder.import_blob(path, self.device_name, config), spec, config)
        dim = spec.inputs[0].batch
        compiled = builder.compile_onnx(path, self.device_name, config, None if dim is None else (dim.min, dim.max))
        return OpenVinoRunner(compiled, spec, config,
                              lambda batch: builder.compile_onnx(path, self.device_name, config, (batch, batch)))

    def executor(self, mode: str, manifest: ExportManifest, load_runner: LoadRunner,
                 cuda_graph: bool = False) -> Executor | None:
        """Streams on few cores (where the generic executor would run one subgraph at a time) pass boundary
        tensors inside OpenVINO and run in waves (chain.py); on more cores, and the whole graph, the generic
        executors."""
        if mode != "streams" or cuda_graph or concurrent_subgraphs(manifest.dag.width, self.parallelism) > 1:
            return super().executor(mode, manifest, load_runner, cuda_graph)
        from .chain import ChainedStreamsExecutor

        return ChainedStreamsExecutor(manifest, load_runner, self.threads)

    def describe(self) -> dict[str, str]:
        info = {"backend": self.name, "version": self.version(), "device": self.device,
                "openvino_device": self.device_name, "threads": str(self.threads),
                "inference_precision": self.hint, "performance_hint": "LATENCY", "num_streams": "1"}
        if self.device_name == "CPU":
            info["cpu_pinning"] = "NO"
        return info
