"""A slice of the deploy-form model as a :class:`Runner` (thread-safe: inference only reads)."""

from __future__ import annotations

import numpy as np
import torch

from ...artifacts.export_manifest import SubgraphSpec, TensorSpec, batch_of
from ...errors import RunnerClosedError
from ..base import Runner
from .slices import Slice


class TorchRunner(Runner):
    """On CUDA it is also a :class:`~..cuda_streams.StreamRunner`: device ``buffers`` for its
    inputs and outputs, and ``enqueue(stream, batch)``.

    A dynamic-batch subgraph (dim 0 bounded) runs any batch within the bounds: the slice is plain
    PyTorch, so only the load-time run (at the smallest batch) and the CUDA buffers (sized for the
    largest batch once, used as views of their first ``batch`` rows) know about the bounds."""

    def __init__(self, fn: Slice, spec: SubgraphSpec, device: torch.device, dtype: torch.dtype, channels_last: bool):
        self.fn, self.device, self.dtype, self.channels_last = fn, device, dtype, channels_last
        super().__init__(spec, spec.inputs, self._outputs(spec))
        self.buffers: dict[str, torch.Tensor] = {}
        if device.type == "cuda":  # pragma: no cover - needs a GPU
            self.buffers = self.stream_buffers()

    def stream_buffers(self) -> dict[str, torch.Tensor]:
        """The CUDA-stream executor's buffers: one per input and output, sized for the largest batch once."""
        return {t.name: torch.empty(t.max_shape, dtype=self.dtype, device=self.device)
                for t in (*self.spec.inputs, *self.spec.outputs)}

    def _outputs(self, spec: SubgraphSpec) -> tuple[TensorSpec, ...]:
        """The slice's outputs, measured by one run on zeros (positional inputs: the spec's by construction),
        at the smallest batch of a dynamic-batch subgraph: an output whose dim 0 follows the batch is
        reported on the manifest's bounded axis; :meth:`infer_impl` returns them in the spec's dtypes."""
        with torch.inference_mode():
            outs = self.fn(*(self._prepare(torch.zeros(t.shape_at(None))) for t in spec.inputs))
        if len(outs) != len(spec.outputs):
            return tuple(TensorSpec(f"output{i}", tuple(o.shape), "float32") for i, o in enumerate(outs))

        def shape(t: TensorSpec, o: torch.Tensor) -> tuple:
            dims = tuple(o.shape)
            if t.batch is not None and dims and dims[0] == t.batch.min:
                return (t.batch, *dims[1:])
            return dims

        return tuple(TensorSpec(t.name, shape(t, o), t.dtype) for t, o in zip(spec.outputs, outs))

    def _rows(self, name: str, batch: int | None) -> torch.Tensor:
        buf = self.buffers[name]
        return buf if batch is None else buf[:batch]

    def enqueue(self, stream, batch: int | None = None) -> None:  # on the CPU in tests/test_batch_gpu_paths.py
        with torch.cuda.stream(stream), torch.inference_mode():
            outs = self.fn(*(self._rows(t.name, batch) for t in self.spec.inputs))
            for t, o in zip(self.spec.outputs, outs):
                self._rows(t.name, batch).copy_(o)

    def _prepare(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, self.dtype)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.dim() == 4 else t

    def infer_tensors(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors in, float32 tensors out, on this runner's device (the :class:`DeviceRunner` interface)."""
        if self.closed:
            raise RunnerClosedError(f"{self.spec.name}: runner is closed; load it again")
        batch_of(self.spec.inputs, feeds, self.spec.name)  # within the bounds (callers of tensors skip check_feeds)
        with torch.inference_mode():
            outs = self.fn(*(self._prepare(feeds[t.name]) for t in self.spec.inputs))
            return {t.name: o.float().contiguous() for t, o in zip(self.spec.outputs, outs)}

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {n: torch.from_numpy(np.ascontiguousarray(x)) for n, x in feeds.items()}
        outs = self.infer_tensors(tensors)
        return {t.name: outs[t.name].cpu().numpy().astype(t.dtype, copy=False) for t in self.spec.outputs}

    def close_impl(self) -> None:
        self.fn = None  # type: ignore[assignment]
