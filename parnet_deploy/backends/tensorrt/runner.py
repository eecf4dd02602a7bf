"""TensorRT backend (TensorRT 10/11 Python API + torch.cuda). Needs an NVIDIA GPU.

One execution context and one non-default CUDA stream per subgraph; device buffers are
pre-allocated ``torch.cuda`` tensors bound once with ``set_tensor_address``; inference is
``execute_async_v3``. torch.cuda (not pycuda) owns streams, events and memory, so there is
one CUDA context in the process. Not runnable on CPU-only machines: tests are marked gpu.

A dynamic-batch engine (one optimization profile, dim 0 of its I/O reported as -1) gets buffers
sized for the profile's maximum once, bound once (a view ``[:batch]`` of a buffer starts at its
address); each call sets its input shapes (``set_input_shape``) at the call's batch, fills the
first ``batch`` rows and reads the outputs' first ``batch`` rows. A batch outside the bounds is
a UserError naming them, before anything reaches the GPU. The load check compares the engine's
profile bounds with the manifest's. tests/test_batch_gpu_paths.py runs this on the CPU against a
fake ``tensorrt`` module and a fake torch.cuda; it has never run against real TensorRT.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...artifacts.export_manifest import SubgraphSpec, TensorSpec, batch_of
from ...errors import ExportError, RuntimeFailure, UserError
from ..base import Runner, reported
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
    declared = {t.name: t for t in (*spec.inputs, *spec.outputs)}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        dims = tuple(int(d) for d in engine.get_tensor_shape(name))  # -1 at dim 0: a dynamic batch
        if is_input and dims and dims[0] < 0 and name in declared and declared[name].batch is not None:
            check_profile(engine, name, declared[name])
        tensors[is_input].append(reported(name, dims, dtype, declared.get(name)))

    def ordered(have: list[TensorSpec], want: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
        by_name = {t.name: t for t in have}
        return tuple(by_name[t.name] for t in want) if by_name.keys() == {t.name for t in want} else tuple(have)

    return ordered(tensors[True], spec.inputs), ordered(tensors[False], spec.outputs)


def check_profile(engine, name: str, declared: TensorSpec) -> None:
    """A dynamic input's batch range in the engine's profile 0 must be the manifest's bounds (an engine
    built for 1..8 under a manifest of 1..4 would accept what the manifest refuses, or the reverse)."""
    shapes = engine.get_tensor_profile_shape(name, 0)  # [min, opt, max]
    lo, hi = int(tuple(shapes[0])[0]), int(tuple(shapes[2])[0])
    if (lo, hi) != (declared.batch.min, declared.batch.max):
        raise ExportError(f"{name}: the engine's batch profile is {lo}..{hi}, the manifest says {declared.batch}; "
                          f"rebuild the engines with parnet-build")


class TensorRTRunner(Runner):
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
            self.dynamic = spec.inputs[0].batch is not None if spec.inputs else False
            self._shape_batch: int | None = None  # the batch the context's input shapes are set at
            for t in (*spec.inputs, *spec.outputs):  # sized once for the largest batch, bound once
                self.buffers[t.name] = torch.empty(t.max_shape, dtype=getattr(torch, t.dtype), device=self.device)
                self.context.set_tensor_address(t.name, self.buffers[t.name].data_ptr())

    def rows(self, name: str, batch: int | None):
        """The buffer of ``name`` at ``batch`` (its first rows; the whole buffer when static)."""
        buf = self.buffers[name]
        return buf if batch is None or not self.dynamic else buf[:batch]

    def set_batch(self, batch: int | None) -> None:
        """The context's input shapes at ``batch`` (a dynamic engine; skipped when already set)."""
        if not self.dynamic or batch == self._shape_batch:
            return
        for t in self.spec.inputs:
            if not self.context.set_input_shape(t.name, t.shape_at(batch)):
                raise UserError(f"TensorRT refused the shape {list(t.shape_at(batch))} for {self.spec.name} input "
                                f"{t.name!r} (the engine's profile: {t.batch})")
        self._shape_batch = batch

    def enqueue(self, stream, batch: int | None = None) -> None:
        """Queue one run at ``batch`` (None: the static shapes; a dynamic engine then runs its largest
        batch) on ``stream`` (the :class:`~..cuda_streams.StreamRunner` interface), with the engine's
        GPU current whatever the caller's is."""
        if self.dynamic and batch is None:
            batch = self.spec.inputs[0].batch.max
        with self.torch.cuda.device(self.device):
            self.set_batch(batch)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeFailure(f"TensorRT execution of {self.spec.name} failed")

    def infer_tensors(self, feeds: dict[str, object]) -> dict[str, object]:
        """Device tensors in and out (the :class:`DeviceRunner` interface): no trip through the host.
        A batch outside the engine's bounds is refused (the distributed executor calls this directly)."""
        batch = batch_of(self.spec.inputs, feeds, self.spec.name)
        with self.lock:
            self.stream.wait_stream(self.torch.cuda.current_stream(self.device))  # feeds were made there
            with self.torch.cuda.stream(self.stream):
                for name, value in feeds.items():
                    self.rows(name, batch).copy_(value, non_blocking=True)
                self.enqueue(self.stream, batch)
                out = {t.name: self.rows(t.name, batch).clone() for t in self.spec.outputs}
            self.stream.synchronize()
            return out

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = batch_of(self.spec.inputs, feeds, self.spec.name)  # checked by Runner.check_feeds
        with self.lock:
            for name, value in feeds.items():
                self.rows(name, batch).copy_(self.torch.from_numpy(np.ascontiguousarray(value)), non_blocking=False)
            self.enqueue(self.stream, batch)
            self.stream.synchronize()
            return {t.name: self.rows(t.name, batch).cpu().numpy() for t in self.spec.outputs}

    def close_impl(self) -> None:
        self.context = self.engine = None
        self.buffers.clear()
