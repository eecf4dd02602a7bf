"""A slice of the deploy-form model as a :class:`Runner` (thread-safe: inference only reads)."""

from __future__ import annotations

import numpy as np
import torch

from ...artifacts.export_manifest import SubgraphSpec, TensorSpec
from ...errors import RunnerClosedError
from ..base import Runner
from .slices import Slice


class TorchRunner(Runner):
    """On CUDA it is also a :class:`~..cuda_streams.StreamRunner`: device ``buffers`` for its
    inputs and outputs, and ``enqueue(stream)``."""

    def __init__(self, fn: Slice, spec: SubgraphSpec, device: torch.device, dtype: torch.dtype, channels_last: bool):
        self.fn, self.device, self.dtype, self.channels_last = fn, device, dtype, channels_last
        super().__init__(spec, spec.inputs, self._outputs(spec))
        self.buffers: dict[str, torch.Tensor] = {}
        if device.type == "cuda":  # pragma: no cover - needs a GPU
            self.buffers = {t.name: torch.empty(t.shape, dtype=dtype, device=device)
                            for t in (*spec.inputs, *spec.outputs)}

    def _outputs(self, spec: SubgraphSpec) -> tuple[TensorSpec, ...]:
        """The slice's outputs, measured by one run on zeros (positional inputs: the spec's by construction);
        :meth:`infer_impl` returns them in the spec's dtypes."""
        with torch.inference_mode():
            outs = self.fn(*(self._prepare(torch.zeros(t.shape)) for t in spec.inputs))
        if len(outs) != len(spec.outputs):
            return tuple(TensorSpec(f"output{i}", tuple(o.shape), "float32") for i, o in enumerate(outs))
        return tuple(TensorSpec(t.name, tuple(o.shape), t.dtype) for t, o in zip(spec.outputs, outs))

    def enqueue(self, stream) -> None:  # pragma: no cover - needs a GPU
        with torch.cuda.stream(stream), torch.inference_mode():
            outs = self.fn(*(self.buffers[t.name] for t in self.spec.inputs))
            for t, o in zip(self.spec.outputs, outs):
                self.buffers[t.name].copy_(o)

    def _prepare(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, self.dtype)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.dim() == 4 else t

    def infer_tensors(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors in, float32 tensors out, on this runner's device (the :class:`DeviceRunner` interface)."""
        if self.closed:
            raise RunnerClosedError(f"{self.spec.name}: runner is closed; load it again")
        with torch.inference_mode():
            outs = self.fn(*(self._prepare(feeds[t.name]) for t in self.spec.inputs))
            return {t.name: o.float().contiguous() for t, o in zip(self.spec.outputs, outs)}

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {n: torch.from_numpy(np.ascontiguousarray(x)) for n, x in feeds.items()}
        outs = self.infer_tensors(tensors)
        return {t.name: outs[t.name].cpu().numpy().astype(t.dtype, copy=False) for t in self.spec.outputs}

    def close_impl(self) -> None:
        self.fn = None  # type: ignore[assignment]
