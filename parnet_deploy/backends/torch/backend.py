"""The torch backend: runs an export's subgraphs as slices of its deploy-form PyTorch model.

An export written with its deploy weights (``deploy.safetensors``, the default of
``parnet-export``) runs here on ``cpu`` or ``cuda:N``, in fp32, fp16 or bf16, optionally
channels_last. It builds no engines: the export is the artifact.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ...artifacts.engines_manifest import BuildOptions, DeviceRecord
from ...artifacts.export_manifest import SubgraphSpec, load_manifest
from ...errors import UserError
from ..base import Backend, cpu_device
from . import INFO
from .runner import TorchRunner

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _torch():
    try:
        import torch
    except ImportError as e:
        raise INFO.missing() from e
    return torch


class TorchBackend(Backend, info=INFO):
    @classmethod
    def version(cls) -> str:
        return str(_torch().__version__)

    @classmethod
    def devices(cls) -> list[DeviceRecord]:
        torch = _torch()
        gpus = [DeviceRecord(tag=f"cuda{i}", kind="cuda", name=torch.cuda.get_device_name(i), index=i)
                for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        return [cpu_device(), *gpus]

    @classmethod
    def build_impl(cls, source: Path, engine: Path, device: DeviceRecord, options: BuildOptions) -> None:
        raise UserError("the torch backend runs exports directly (runtime.load(export, backend='torch')); "
                        "there is nothing to build")

    def __init__(self, threads: int | None = None, device: str | None = None, precision: str = "fp32",
                 channels_last: bool = False):
        super().__init__(threads, device, precision)
        torch = _torch()
        if precision not in DTYPES:
            raise UserError(f"torch: precision {precision!r}; use one of {', '.join(DTYPES)}")
        try:
            self.torch_device = torch.device(self.device)
        except RuntimeError as e:
            raise UserError(f"torch: unknown device {self.device!r}; use cpu or cuda:N") from e
        if self.torch_device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"torch: {self.device} asked for, but torch.cuda.is_available() is False here")
        self.dtype = getattr(torch, DTYPES[precision])
        if self.torch_device.type == "cuda" and precision == "fp32":
            # fp32 means IEEE fp32, as ONNX Runtime computes it: cuDNN and cuBLAS would otherwise use
            # TF32 on Ampere and later (~3e-4 relative error). Process-wide, like every torch flag.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.channels_last = channels_last
        self._models: dict[Path, object] = {}
        self._lock = threading.Lock()

    def _model(self, directory: Path):
        """The deploy-form model of an export directory, built once per backend instance."""
        with self._lock:
            if directory not in self._models:
                from .weights import deploy_model

                manifest = load_manifest(directory, verify=False)  # runtime.load verified every file already
                if manifest.family != "parnet":
                    raise UserError(f"{directory} holds a {manifest.family} model; the torch backend runs ParNet "
                                    f"exports only (use onnxruntime or openvino)")
                if manifest.torch_weights is None:
                    raise UserError(f"{directory} has no deploy weights for the torch backend; re-export it "
                                    f"(parnet-export writes deploy.safetensors unless --no-torch-weights)")
                model = deploy_model(manifest.model, directory / manifest.torch_weights)
                memory = _torch().channels_last if self.channels_last else _torch().contiguous_format
                self._models[directory] = (model.to(self.torch_device, self.dtype, memory_format=memory),
                                           manifest.split)
            return self._models[directory]

    def load(self, path: Path, spec: SubgraphSpec, concurrency: int = 1) -> TorchRunner:
        """``path`` is the subgraph's file in an export directory; the slice comes from the deploy weights."""
        from .slices import slice_of

        model, split = self._model(Path(path).parent.resolve())
        return TorchRunner(slice_of(model, spec.name, split), spec, self.torch_device, self.dtype, self.channels_last)

    def executor(self, mode: str, manifest, load_runner, cuda_graph: bool = False):
        """On a GPU, whole and streams run on CUDA streams (one per subgraph; a CUDA graph if asked);
        elsewhere the generic executors."""
        if self.torch_device.type != "cuda" or mode not in ("whole", "streams"):
            return super().executor(mode, manifest, load_runner, cuda_graph)
        from ..cuda_streams import CudaStreamsExecutor  # pragma: no cover - needs a GPU

        return CudaStreamsExecutor(manifest, load_runner, cuda_graph, whole=mode == "whole")  # pragma: no cover

    def describe(self) -> dict[str, str]:
        torch = _torch()
        return {"backend": self.name, "version": self.version(), "device": self.device,
                "precision": self.precision, "channels_last": str(self.channels_last),
                **({"tf32": str(torch.backends.cudnn.allow_tf32)} if self.torch_device.type == "cuda" else {}),
                "intra_op_threads": str(torch.get_num_threads())}
