"""Streams on few cores: the subgraphs' infer requests wired to each other once, then run wave by wave.

The generic streams executor hands every boundary tensor through numpy and gives each request
new memory on every call (``infer(feeds, share_inputs=True)``). OpenVINO's CPU plugin pays for
new memory per call: measured on 2 cores, ParNet-S int8, that path cost 1.07x the whole graph,
and the same five requests wired once 1.03x (benchmarks/results/int8_peers.md has the current
figures). Here each boundary tensor is one ``ov.Tensor`` per chain, set once as the producer's
output and every consumer's input, so a call only sets the graph inputs and runs the requests.

Subgraphs that could run at once (one DAG level) run in waves of up to ``threads`` subgraphs, each
compiled for ``threads // len(wave)`` threads: on 2 cores ParNet's streams run as stream0 and stream1
side by side on one thread each, then stream2 on two. Side by side each 1-thread stream ran about 6%
longer than alone, and the waves took 0.944x and 0.951x the same chain one subgraph at a time in two
runs (ParNet-S int8, 2 cores, benchmarks/results/int8_cuts.md); three side by side on two cores only
fight (see ``concurrent_subgraphs``).

A chain is one request per subgraph and serves one call at a time; calls from several threads
each take a chain from a pool (as :class:`OpenVinoRunner` pools requests).
"""

from __future__ import annotations

import queue
import time
from collections import defaultdict
from typing import Any

import numpy as np

from ...artifacts.dag import Dag
from ...artifacts.export_manifest import ExportManifest, SubgraphSpec, batch_of
from ...errors import RuntimeFailure, UserError
from ..base import LoadRunner, StageTime
from .config import openvino, reason
from .runner import OpenVinoRunner


def waves(dag: Dag, threads: int) -> tuple[tuple[str, ...], ...]:
    """The subgraphs in an execution order, grouped into waves that run at once: each DAG level cut into
    runs of at most ``threads`` subgraphs (the last run of a level takes what is left)."""
    size = max(1, threads)
    return tuple(level[i:i + size] for level in dag.levels() for i in range(0, len(level), size))


class _Chain:
    """One infer request per subgraph, boundary tensors shared between producer and consumers."""

    def __init__(self, specs: list[SubgraphSpec], runners: dict[str, OpenVinoRunner], graph_inputs: set[str],
                 batch: int | None, waves: tuple[tuple[str, ...], ...]):
        ov = openvino()
        self.requests = [(spec, runners[spec.name].create_request(batch)) for spec in specs]
        index = {spec.name: i for i, spec in enumerate(specs)}
        self.waves = [[self.requests[index[name]] for name in wave] for wave in waves]
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
        for wave in self.waves:
            start = time.perf_counter() - t0
            *others, (spec, request) = wave
            started = []
            try:
                for other in others:  # on OpenVINO's threads, while the last one runs on the caller's
                    _call(other, "start_async")
                    started.append(other)
                _call((spec, request), "infer")
                times.append(StageTime(spec.name, start, time.perf_counter() - t0))
            finally:
                failed = _wait(started)  # every request is idle before this call returns or raises
            if failed:
                raise failed
            # an asynchronous request's own latency: its end, as near as OpenVINO reports it
            times += [StageTime(s.name, start, start + r.latency / 1e3) for s, r in others]
        # the output tensors are overwritten by this chain's next call: copy out
        return {name: np.array(self.tensors[name].data, copy=True) for name in outputs}, times


def _call(step: tuple[SubgraphSpec, Any], method: str) -> None:
    """``request.<method>()``, its failure named after the subgraph."""
    spec, request = step
    try:
        getattr(request, method)()
    except RuntimeError as e:
        raise RuntimeFailure(f"{spec.name}: OpenVINO inference failed: {reason(e)}") from e


def _wait(started: list[tuple[SubgraphSpec, Any]]) -> RuntimeFailure | None:
    """Waits for every started request; the first failure among them, if any."""
    failed = None
    for step in started:
        try:
            _call(step, "wait")
        except RuntimeFailure as e:
            failed = failed or e
    return failed


class ChainedStreamsExecutor:
    """The streams mode inside OpenVINO: wave by wave (:func:`waves`), each wave's subgraphs at once."""

    mode = "streams"
    gpu_time_ms = None

    def __init__(self, manifest: ExportManifest, load_runner: LoadRunner, threads: int):
        self.specs = list(manifest.subgraphs)  # a valid execution order
        self.waves = waves(manifest.dag, threads)
        self.workers = max(len(w) for w in self.waves)
        # each runner checks its compiled model against the manifest's names, dtypes and shapes; a wave's
        # subgraphs share the threads
        self.runners: dict[str, OpenVinoRunner] = {  # type: ignore
            name: load_runner(manifest.dag.spec(name), len(wave)) for wave in self.waves for name in wave}
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
            chain = _Chain(self.specs, self.runners, set(self.inputs), batch, self.waves)
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
