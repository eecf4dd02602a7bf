"""An OpenVINO compiled model as a :class:`Runner`: a pool of infer requests, one per concurrent call."""

from __future__ import annotations

import queue
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...artifacts.export_manifest import SubgraphSpec, TensorSpec
from ...errors import ExportError, RuntimeFailure, UserError
from ..base import Runner
from .config import applied, reason


OV_TYPES = {"float32": "f32", "float16": "f16"}


def _ports(ports: Sequence[Any], tensors: tuple[TensorSpec, ...], kind: str, where: str) -> list[tuple[str, int]]:
    """``(spec name, port index)`` for each tensor; the model's names must be exactly the spec's."""
    names = [port.get_names() for port in ports]
    found = [(t.name, next((i for i, n in enumerate(names) if t.name in n), -1)) for t in tensors]
    if len(ports) != len(tensors) or any(i < 0 for _, i in found):
        have = sorted(port.any_name for port in ports)
        raise UserError(f"{where}: the model's {kind}s {have} are not the manifest's {[t.name for t in tensors]}")
    for (name, i), t in zip(found, tensors):
        shape = ports[i].get_partial_shape()
        have = (tuple(shape.to_shape()) if shape.is_static else str(shape), ports[i].get_element_type().get_type_name())
        if have != (tuple(t.shape), OV_TYPES.get(t.dtype, t.dtype)):
            raise ExportError(f"{where}: the model's {kind} {name!r} is {have[1]} {have[0]}, the manifest says "
                              f"{t.dtype} {tuple(t.shape)}")
    return found


class OpenVinoRunner(Runner):
    def __init__(self, compiled: Any, spec: SubgraphSpec, config: dict[str, str]):
        super().__init__(spec)
        self.properties = applied(compiled, config, spec.name)
        self._input_ports = _ports(compiled.inputs, spec.inputs, "input", spec.name)
        self._output_ports = _ports(compiled.outputs, spec.outputs, "output", spec.name)
        self._shapes = {t.name: tuple(t.shape) for t in spec.inputs}
        self._compiled: Any = compiled
        self._requests: queue.SimpleQueue = queue.SimpleQueue()

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        compiled = self._compiled
        if compiled is None:
            raise RuntimeFailure(f"{self.spec.name}: the runner is closed")
        for name, shape in self._shapes.items():
            if np.shape(feeds[name]) != shape:
                raise UserError(f"{self.spec.name}: input {name!r} has shape {np.shape(feeds[name])}, expected {shape}")
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            # infer() releases the GIL; the request's output memory is reused by its next call: copy out
            results = request.infer({i: feeds[name] for name, i in self._input_ports},
                                    share_inputs=True, share_outputs=True)
            return {name: np.array(results[i], dtype=np.float32, copy=True) for name, i in self._output_ports}
        except RuntimeError as e:
            raise RuntimeFailure(f"{self.spec.name}: OpenVINO inference failed: {reason(e)}") from e
        finally:
            self._requests.put(request)

    def close_impl(self) -> None:
        self._compiled = None
        while not self._requests.empty():
            self._requests.get_nowait()
