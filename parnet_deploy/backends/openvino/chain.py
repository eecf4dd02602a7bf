"""Streams on one CPU: the subgraphs' infer requests wired to each other once, then run in order.

The generic streams executor hands every boundary tensor through numpy and gives each request
new memory on every call (``infer(feeds, share_inputs=True)``). OpenVINO's CPU plugin pays for
new memory per call: measured on 2 cores, ParNet-S int8, that path cost 1.07x the whole graph,
and the same five requests wired once 1.03x (benchmarks/results/int8_peers.md has the current
figures). Here each boundary tensor is one ``ov.Tensor`` per chain, set once as the producer's
output and every consumer's input, so a call only sets the graph inputs and runs the requests.

A chain is one request per subgraph and serves one call at a time; calls from several threads
each take a chain from a pool (as :class:`OpenVinoRunner` pools requests).
"""

from __future__ import annotations

import queue
import time
from collections import defaultdict
from typing import Any

import numpy as np

from ...artifacts.export_manifest import ExportManifest, SubgraphSpec, batch_of
from ...errors import RuntimeFailure, UserError
from ..base import LoadRunner, StageTime
from .config import openvino, reason
from .runner import OpenVinoRunner


class _Chain:
    """One infer request per subgraph, boundary tensors shared between producer and consumers."""

    def __init__(self, specs: list[SubgraphSpec], runners: dict[str, OpenVinoRunner], graph_inputs: set[str],
                 batch: int | None):
        ov = openvino()
        self.requests = [(spec, runners[spec.name].create_request(batch)) for spec in specs]
        self.tensors: dict[str, Any] = {}
        self.feeds: list[tuple[Any, int, str]] = []  # (request, port, graph input name)
        for spec, request in self.requests:
            ports = runners[spec.name].output_ports
            for t in spec.outputs:
                # the runner has checked the port's type and shape against the manifest; a dynamic-batch
                # chain is wired for one batch
                kind = runners[spec.name].element_type(ports[t.name])
                tensor = ov.Tensor(kind, ov.Shape(list(t.shape_at(batch))))
                request.set_output_tensor(ports[t.name], tensor)
                self.tensors[t.name] = tensor
        for spec, request in self.requests:
            ports = runners[spec.name].input_ports
            for t in spec.inputs:
                if t.name in graph_inputs:
                    self.feeds.append((request, ports[t.name], t.name))
                else:
                    request.set_input_tensor(ports[t.name], self.tensors[t.name])

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str], t0: float) -> tuple[dict, list[StageTime]]:
        ov = openvino()
        for request, port, name in self.feeds:
            request.set_input_tensor(port, ov.Tensor(feeds[name], shared_memory=True))
        times = []
        for spec, request in self.requests:
            start = time.perf_counter() - t0
            try:
                request.infer()
            except RuntimeError as e:
                raise RuntimeFailure(f"{spec.name}: OpenVINO inference failed: {reason(e)}") from e
            times.append(StageTime(spec.name, start, time.perf_counter() - t0))
        # the output tensors are overwritten by this chain's next call: copy out
        return {name: np.array(self.tensors[name].data, copy=True) for name in outputs}, times


class ChainedStreamsExecutor:
    """The streams mode, one subgraph at a time in the manifest's order, inside OpenVINO."""

    mode = "streams"
    workers = 1
    gpu_time_ms = None

    def __init__(self, manifest: ExportManifest, load_runner: LoadRunner):
        self.specs = list(manifest.subgraphs)  # a valid execution order
        # each runner checks its compiled model against the manifest's names, dtypes and shapes
        self.runners: dict[str, OpenVinoRunner] = {s.name: load_runner(s, 1) for s in self.specs}  # type: ignore
        self.inputs = {t.name: t for t in manifest.whole.inputs}
        self.outputs = [t.name for t in manifest.whole.outputs]
        # chains by batch (one key, None, for static shapes); each pool grows with concurrent calls
        self._chains: dict[int | None, queue.SimpleQueue[_Chain]] = defaultdict(queue.SimpleQueue)

    def _check(self, feeds: dict[str, np.ndarray]) -> int | None:
        if feeds.keys() != self.inputs.keys():
            raise UserError(f"streams: expected inputs {sorted(self.inputs)}, got {sorted(feeds)}")
        batch = batch_of(tuple(self.inputs.values()), feeds, "streams")
        for name, t in self.inputs.items():
            x = feeds[name]
            if (not isinstance(x, np.ndarray) or x.dtype != np.dtype(t.dtype) or tuple(x.shape) != t.shape_at(batch)
                    or not x.flags.c_contiguous):
                raise UserError(f"streams: input {name!r} must be a C-contiguous {t.dtype} array of shape "
                                f"{t.describe()}, got {getattr(x, 'dtype', type(x).__name__)} "
                                f"{list(getattr(x, 'shape', ()))}")
        return batch

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        batch = self._check(feeds)
        t0 = time.perf_counter()
        pool = self._chains[batch]
        try:
            chain = pool.get_nowait()
        except queue.Empty:
            chain = _Chain(self.specs, self.runners, set(self.inputs), batch)
        try:
            return chain.run(feeds, self.outputs, t0)
        finally:
            pool.put(chain)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.infer_timed(feeds)[0]

    def close(self) -> None:
        self._chains.clear()
        for r in self.runners.values():
            r.close()
