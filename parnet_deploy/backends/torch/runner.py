"""A slice of the deploy-form model as a :class:`Runner` (thread-safe: inference only reads)."""

from __future__ import annotations

import numpy as np
import torch

from ...artifacts.export_manifest import SubgraphSpec
from ..base import Runner
from .slices import Slice


class TorchRunner(Runner):
    """On CUDA it is also a :class:`~..cuda_streams.StreamRunner`: device ``buffers`` for its
    inputs and outputs, and ``enqueue(stream)``."""

    def __init__(self, fn: Slice, spec: SubgraphSpec, device: torch.device, dtype: torch.dtype, channels_last: bool):
        super().__init__(spec)
        self.fn, self.device, self.dtype, self.channels_last = fn, device, dtype, channels_last
        self.buffers: dict[str, torch.Tensor] = {}
        if device.type == "cuda":  # pragma: no cover - needs a GPU
            self.buffers = {t.name: torch.empty(t.shape, dtype=dtype, device=device)
                            for t in (*spec.inputs, *spec.outputs)}

    def enqueue(self, stream) -> None:  # pragma: no cover - needs a GPU
        with torch.cuda.stream(stream), torch.inference_mode():
            outs = self.fn(*(self.buffers[t.name] for t in self.spec.inputs))
            for t, o in zip(self.spec.outputs, outs):
                self.buffers[t.name].copy_(o)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.dtype)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.dim() == 4 else t

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outs = self.fn(*(self._tensor(feeds[t.name]) for t in self.spec.inputs))
            return {t.name: o.float().cpu().numpy() for t, o in zip(self.spec.outputs, outs)}

    def close_impl(self) -> None:
        self.fn = None  # type: ignore[assignment]
