"""ONNX Runtime on a GPU through IO binding: buffers bound once, copies through pinned host memory.

``session.run`` with numpy feeds copies the input to the device and the outputs back on every
call, from pageable memory (synchronous), and allocates the outputs anew. Here every binding
owns device tensors for its inputs and outputs, bound once when it is made, and a pinned host
staging tensor for each; a call copies the input through its staging tensor to the device, runs,
and copies the outputs back through theirs. Bindings are pooled, so concurrent calls each take their own
and nothing is bound
or allocated per call once the pool is warm.

Pinned host memory comes from the CUDA execution provider's host-accessible allocator
(``OrtEpDevice.memory_info(HOST_ACCESSIBLE)``); where this ONNX Runtime build does not offer it
the staging tensors are ordinary host memory, and :attr:`IoBindingRunner.host_memory` says so.
"""

from __future__ import annotations

import queue
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ...artifacts.export_manifest import SubgraphSpec, batch_of
from ...errors import RuntimeFailure, UserError
from ..base import Runner


def pinned_memory_info(ort, ep_name: str = "CUDAExecutionProvider"):
    """Host-accessible (pinned) memory of ``ep_name``, or None where this build has none.
    Pinned memory is not tied to one GPU, so the first device of that provider serves all."""
    get_devices = getattr(ort, "get_ep_devices", None)
    memory_type = getattr(getattr(ort, "OrtDeviceMemoryType", None), "HOST_ACCESSIBLE", None)
    if get_devices is None or memory_type is None:
        return None
    for ep_device in get_devices():
        if ep_device.ep_name == ep_name:
            return ep_device.memory_info(memory_type)
    return None


@dataclass
class _Bound:
    binding: object
    device: dict[str, object]  # tensor name -> OrtValue on the session's device
    staging: dict[str, object]  # tensor name -> host OrtValue (pinned where available)


class IoBindingRunner(Runner):
    def __init__(self, session, spec: SubgraphSpec, device_type: str, device_id: int, host_memory_info=None):
        from .runner import engine_io, ort

        inputs, outputs, shifted = engine_io(session, spec)
        super().__init__(spec, inputs, outputs)
        if shifted:  # bound buffers have the manifest's int8; the session takes the cuts as uint8
            raise UserError(f"{spec.name}: the int8 cuts of an int8 export ({', '.join(sorted(shifted))}) do not run "
                            f"through CUDA IO binding; run the whole graph (mode whole)")

        self.ort, self.session = ort(), session
        self.device_type, self.device_id = device_type, device_id
        self.host_memory_info = host_memory_info
        self.host_memory = "pinned" if host_memory_info is not None else "pageable"
        self.bindings_made = 0
        # bindings by batch (None: static shapes); a dynamic-batch graph binds each batch it is called with
        self._pools: dict[int | None, queue.SimpleQueue[_Bound]] = defaultdict(queue.SimpleQueue)
        dim = spec.inputs[0].batch
        first = None if dim is None else dim.min
        self._pools[first].put(self._bind(first))  # the first binding now: a mistake shows at load time

    def _value(self, t, host: bool, batch: int | None):
        shape, dtype = list(t.shape_at(batch)), np.dtype(t.dtype)
        OrtValue = self.ort.OrtValue
        if host:
            if self.host_memory_info is not None:
                return OrtValue.ortvalue_from_shape_and_type(shape, dtype, memory_info=self.host_memory_info)
            return OrtValue.ortvalue_from_shape_and_type(shape, dtype)
        return OrtValue.ortvalue_from_shape_and_type(shape, dtype, self.device_type, self.device_id)

    def _bind(self, batch: int | None) -> _Bound:
        binding = self.session.io_binding()
        device = {t.name: self._value(t, False, batch) for t in (*self.spec.inputs, *self.spec.outputs)}
        for t in self.spec.inputs:
            binding.bind_ortvalue_input(t.name, device[t.name])
        for t in self.spec.outputs:
            binding.bind_ortvalue_output(t.name, device[t.name])
        staging = {t.name: self._value(t, True, batch) for t in (*self.spec.inputs, *self.spec.outputs)}
        self.bindings_made += 1
        return _Bound(binding, device, staging)

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = batch_of(self.spec.inputs, feeds, self.spec.name)
        pool = self._pools[batch]
        try:
            bound = pool.get_nowait()
        except queue.Empty:  # another call holds every binding of this batch: make one more
            bound = self._bind(batch)
        try:
            for name, x in feeds.items():
                bound.staging[name].update_inplace(np.ascontiguousarray(x))
                bound.device[name].update_inplace(bound.staging[name])
            bound.binding.synchronize_inputs()
            self.session.run_with_iobinding(bound.binding)
            bound.binding.synchronize_outputs()
            out = {}
            for t in self.spec.outputs:
                bound.staging[t.name].update_inplace(bound.device[t.name])
                out[t.name] = bound.staging[t.name].numpy().copy()  # the staging tensor is reused
            return out
        except Exception as e:
            raise RuntimeFailure(f"onnxruntime failed running {self.spec.name}: {str(e).splitlines()[0]}") from e
        finally:
            pool.put(bound)

    def close_impl(self) -> None:
        self._pools.clear()
        self.session = None
