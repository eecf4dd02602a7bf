"""An OpenVINO compiled model as a :class:`Runner`: a pool of infer requests, one per concurrent call."""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...artifacts.export_manifest import SubgraphSpec, TensorSpec, batch_of
from ...artifacts.schema import MAX_BATCH, BatchDim
from ...errors import RunnerClosedError, RuntimeFailure
from ..base import Runner
from .config import applied, reason

NUMPY_TYPES = {"f32": "float32", "f16": "float16", "i8": "int8", "u8": "uint8", "i32": "int32", "i64": "int64",
               "boolean": "bool"}


def engine_io(ports: Sequence[Any], tensors: tuple[TensorSpec, ...]) -> tuple[tuple[TensorSpec, ...], list[int]]:
    """What the compiled model reports for ``tensors`` (in the spec's order where every name is found,
    else in its own order under its own names), and the port index of each spec tensor."""
    names = [port.get_names() for port in ports]
    found = [next((i for i, n in enumerate(names) if t.name in n), -1) for t in tensors]
    if len(ports) != len(tensors) or -1 in found:
        found, labels = list(range(len(ports))), [port.any_name for port in ports]
    else:
        labels = [t.name for t in tensors]

    def dim(d: Any) -> int | BatchDim:
        if d.is_static:
            return d.get_length()
        bounded = 0 < d.get_min_length() < d.get_max_length() <= MAX_BATCH
        return BatchDim(d.get_min_length(), d.get_max_length()) if bounded else -1  # -1: unbounded

    def spec(i: int, name: str) -> TensorSpec:
        shape = tuple(dim(d) for d in ports[i].get_partial_shape())
        kind = ports[i].get_element_type().get_type_name()
        return TensorSpec(name, shape, NUMPY_TYPES.get(kind, kind))

    return tuple(spec(i, name) for i, name in zip(found, labels)), found


class OpenVinoRunner(Runner):
    """A pool of infer requests on one compiled model; or, for a dynamic-batch ONNX file given
    ``compile_batch``, one compiled model per batch, made on the batch's first call (measured on
    ParNet-S, 2 cores: the bounded model ran 1.03-1.06x the static one at batch 1, about 1.01-1.03x
    at 4 and 8, benchmarks/results/batch_sweep.md; compiling one costs ~0.15 s). ``compiled`` is
    then the bounded model, which the load-time check reads."""

    def __init__(self, compiled: Any, spec: SubgraphSpec, config: dict[str, str],
                 compile_batch: Callable[[int], Any] | None = None):
        inputs, input_ports = engine_io(compiled.inputs, spec.inputs)
        outputs, output_ports = engine_io(compiled.outputs, spec.outputs)
        super().__init__(spec, inputs, outputs)
        self.properties = applied(compiled, config, spec.name)
        self.input_ports = {t.name: i for t, i in zip(spec.inputs, input_ports)}  # tensor name → port index
        self._output_ports = [(t.name, i, np.dtype(t.dtype)) for t, i in zip(spec.outputs, output_ports)]
        self.output_ports = {name: i for name, i, _ in self._output_ports}
        self._compiled: Any = compiled
        self._compile_batch = compile_batch if spec.inputs[0].batch is not None else None
        self._by_batch: dict[int, Any] = {}  # batch → its own compiled model (compile_batch)
        self._lock = threading.Lock()
        self._requests: dict[int | None, queue.SimpleQueue] = defaultdict(queue.SimpleQueue)

    def _model(self, batch: int | None) -> Any:
        if self._compiled is None:
            raise RunnerClosedError(f"{self.spec.name}: runner is closed; load it again")
        if self._compile_batch is None or batch is None:
            return self._compiled
        with self._lock:  # one compile per batch, whichever thread asks first
            if batch not in self._by_batch:
                self._by_batch[batch] = self._compile_batch(batch)
            return self._by_batch[batch]

    def create_request(self, batch: int | None = None) -> Any:
        """A new OpenVINO infer request on the compiled model for ``batch`` (see chain.py)."""
        return self._model(batch).create_infer_request()

    def element_type(self, output_port: int) -> Any:
        """The OpenVINO element type of one output port (what a tensor bound to it must hold)."""
        return self._model(None).outputs[output_port].get_element_type()

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = batch_of(self.spec.inputs, feeds, self.spec.name) if self._compile_batch is not None else None
        pool = self._requests[batch]
        try:
            request = pool.get_nowait()
        except queue.Empty:
            request = self.create_request(batch)
        try:
            # infer() releases the GIL; the request's output memory is reused by its next call: copy out
            results = request.infer({i: feeds[name] for name, i in self.input_ports.items()},
                                    share_inputs=True, share_outputs=True)
            return {name: np.array(results[i], dtype=dtype, copy=True) for name, i, dtype in self._output_ports}
        except RuntimeError as e:
            raise RuntimeFailure(f"{self.spec.name}: OpenVINO inference failed: {reason(e)}") from e
        finally:
            pool.put(request)

    def close_impl(self) -> None:
        self._compiled = None
        self._by_batch.clear()
        self._requests.clear()
