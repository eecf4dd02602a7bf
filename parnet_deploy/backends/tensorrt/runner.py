"""TensorRT backend (TensorRT 10/11 Python API + torch.cuda). Needs an NVIDIA GPU.

One execution context and one non-default CUDA stream per subgraph; device buffers are
pre-allocated ``torch.cuda`` tensors bound once with ``set_tensor_address``; inference is
``execute_async_v3``. torch.cuda (not pycuda) owns streams, events and memory, so there is
one CUDA context in the process. Not runnable on CPU-only machines: tests are marked gpu.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...artifacts.export_manifest import SubgraphSpec, TensorSpec
from ...errors import RuntimeFailure, UserError
from ..base import Runner
from . import INFO
from .builder import logger


def _modules():
    try:
        import tensorrt as trt
        import torch
    except ImportError as e:
        raise INFO.missing() from e
    if not torch.cuda.is_available():
        raise INFO.missing("no CUDA device is visible to torch.cuda")
    return trt, torch


def engine_io(trt, engine, spec: SubgraphSpec) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The engine's I/O tensors (name, shape, numpy dtype), inputs and outputs apart, each in the spec's
    order where the names agree and in the engine's order otherwise."""
    tensors: dict[bool, list[TensorSpec]] = {True: [], False: []}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        tensors[is_input].append(TensorSpec(name, tuple(engine.get_tensor_shape(name)), dtype))

    def ordered(have: list[TensorSpec], want: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
        by_name = {t.name: t for t in have}
        return tuple(by_name[t.name] for t in want) if by_name.keys() == {t.name for t in want} else tuple(have)

    return ordered(tensors[True], spec.inputs), ordered(tensors[False], spec.outputs)


class TensorRTRunner(Runner):  # pragma: no cover - needs a GPU
    """One execution context and fixed buffers: calls are serialised by a lock (documented in the README)."""

    def __init__(self, engine_path: Path, spec: SubgraphSpec, device_index: int):
        trt, torch = _modules()
        self.torch, self.device = torch, torch.device("cuda", device_index)
        self.lock = threading.Lock()
        with torch.cuda.device(self.device):
            self.engine = trt.Runtime(logger()).deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise UserError(f"TensorRT cannot deserialize {engine_path.name}; rebuild it with parnet-build")
            super().__init__(spec, *engine_io(trt, self.engine, spec))
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(device=self.device)
            self.buffers: dict[str, object] = {}
            for t in (*spec.inputs, *spec.outputs):
                self.buffers[t.name] = torch.empty(t.shape, dtype=getattr(torch, t.dtype), device=self.device)
                self.context.set_tensor_address(t.name, self.buffers[t.name].data_ptr())

    def enqueue(self, stream) -> None:
        """Queue one run on ``stream`` (the :class:`~..cuda_streams.StreamRunner` interface), with the
        engine's GPU current whatever the caller's is."""
        with self.torch.cuda.device(self.device):
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeFailure(f"TensorRT execution of {self.spec.name} failed")

    def infer_tensors(self, feeds: dict[str, object]) -> dict[str, object]:
        """Device tensors in and out (the :class:`DeviceRunner` interface): no trip through the host."""
        with self.lock:
            self.stream.wait_stream(self.torch.cuda.current_stream(self.device))  # feeds were made there
            with self.torch.cuda.stream(self.stream):
                for name, value in feeds.items():
                    self.buffers[name].copy_(value, non_blocking=True)
                self.enqueue(self.stream)
                out = {t.name: self.buffers[t.name].clone() for t in self.spec.outputs}
            self.stream.synchronize()
            return out

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            for name, value in feeds.items():
                self.buffers[name].copy_(self.torch.from_numpy(np.ascontiguousarray(value)), non_blocking=False)
            self.enqueue(self.stream)
            self.stream.synchronize()
            return {t.name: self.buffers[t.name].cpu().numpy() for t in self.spec.outputs}

    def close_impl(self) -> None:
        self.context = self.engine = None
        self.buffers.clear()
