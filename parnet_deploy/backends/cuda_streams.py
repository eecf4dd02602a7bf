"""The CUDA-stream executor, for any backend whose runners can enqueue on a stream.

A :class:`StreamRunner` holds device buffers for its inputs and outputs and enqueues its
subgraph on a given stream; TensorRT and torch runners implement it. The executor runs the
manifest DAG on one GPU with one stream per subgraph: a subgraph's stream waits on its
producers' ``done`` events, a producer's output is copied into the consumer's input buffer on
the consumer's stream (where the two are different buffers), and everything forks from and
joins back into one origin stream, so the whole call can be captured into a CUDA graph and
replayed. Several GPUs are the distributed executor's job (one process per GPU): runners on
different devices are refused here.

GPU time is measured with CUDA events on the origin stream around the call: first start to
last done. Without a graph, per-subgraph start/done events give the stage table; inside a
graph, events are dependency-only (timing events cannot be re-recorded by a replay), so the
stage table is one ``cuda-graph`` row. One call at a time per executor (a lock): its streams
and buffers are single-use.

A dynamic-batch export (dim 0 of every tensor bounded, ``min..max``) runs any batch within the
bounds: the runners' buffers are sized for the maximum once, and each call uploads, copies and
downloads views of their first ``batch`` rows (``CudaApi.rows``) and hands the batch to
``enqueue``. A batch outside the bounds is a UserError naming them, before anything is queued.
CUDA graphs are refused for a dynamic export (one line, at load): a graph replays the shapes it
captured, and whether a TensorRT context can replay a graph of one batch after running another
has not been checked on a GPU; export a static batch N for graphs.

CUDA itself is reached only through a :class:`CudaApi` (``TorchCuda``: torch.cuda), so the
DAG logic is tested on CPU machines with a fake that records the operations. It has not run on a
GPU in this project's sessions so far.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from ..artifacts.export_manifest import ExportManifest, SubgraphSpec, batch_of
from ..errors import RuntimeFailure, UserError
from .base import LoadRunner, StageTime

ORIGIN = "origin"
GRAPH_STAGE = "cuda-graph"  # a replayed graph is timed as one stage


class StreamRunner(Protocol):
    spec: SubgraphSpec
    device: Any  # where its buffers live
    buffers: dict[str, Any]  # tensor name -> device buffer, for every input and output (at the largest batch)

    def enqueue(self, stream: Any, batch: int | None = None) -> None:
        """Queue one run on ``stream``, reading and writing ``buffers`` (their first ``batch`` rows
        for a dynamic-batch subgraph; None: static shapes)."""

    def close(self) -> None: ...


class CudaApi(Protocol):
    def stream(self, device: Any) -> Any: ...
    def event(self, timing: bool) -> Any: ...
    def record(self, event: Any, stream: Any) -> None: ...
    def wait(self, stream: Any, event: Any) -> None: ...
    def copy(self, dst: Any, src: Any, stream: Any) -> None: ...
    def upload(self, dst: Any, host: np.ndarray, stream: Any) -> None: ...
    def download(self, src: Any, stream: Any) -> np.ndarray: ...
    def synchronize(self, event: Any) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...
    def same_buffer(self, a: Any, b: Any) -> bool: ...
    def rows(self, buffer: Any, n: int) -> Any: ...  # a view of the first n rows (dim 0)
    def new_graph(self) -> Any: ...
    def capture(self, graph: Any, stream: Any) -> Any: ...  # a context manager
    def replay(self, graph: Any, stream: Any) -> None: ...


class TorchCuda:  # pragma: no cover - needs a GPU
    """:class:`CudaApi` on torch.cuda."""

    def __init__(self):
        import torch

        self.torch = torch

    def stream(self, device):
        return self.torch.cuda.Stream(device=device)

    def event(self, timing):
        return self.torch.cuda.Event(enable_timing=timing)

    def record(self, event, stream):
        event.record(stream)

    def wait(self, stream, event):
        stream.wait_event(event)

    def copy(self, dst, src, stream):
        with self.torch.cuda.stream(stream):
            dst.copy_(src, non_blocking=True)

    def upload(self, dst, host, stream):  # converted to the buffer's dtype on the host, then one async copy
        pinned = self.torch.from_numpy(np.ascontiguousarray(host)).to(dst.dtype).pin_memory()
        with self.torch.cuda.stream(stream):
            dst.copy_(pinned, non_blocking=True)

    def download(self, src, stream):
        with self.torch.cuda.stream(stream):
            return src.float().cpu().numpy()

    def synchronize(self, event):
        event.synchronize()

    def elapsed_ms(self, start, end):
        return start.elapsed_time(end)

    def same_buffer(self, a, b):
        return a.data_ptr() == b.data_ptr()

    def rows(self, buffer, n):
        return buffer[:n]

    def new_graph(self):
        return self.torch.cuda.CUDAGraph()

    def capture(self, graph, stream):
        return self.torch.cuda.graph(graph, stream=stream)

    def replay(self, graph, stream):
        with self.torch.cuda.stream(stream):
            graph.replay()


class CudaStreamsExecutor:

    def __init__(self, manifest: ExportManifest, load_runner: LoadRunner, cuda_graph: bool = False,
                 cuda: CudaApi | None = None, whole: bool = False):
        """``whole``: run the export's whole graph as a one-node DAG (GPU timing and graphs for it too)."""
        self.cuda = cuda or TorchCuda()
        self.mode = "whole" if whole else "streams"
        self.specs = [manifest.whole] if whole else list(manifest.subgraphs)
        self.producer = {t.name: s.name for s in self.specs for t in s.outputs}
        self.input = manifest.input.name
        self.inputs = manifest.whole.inputs
        self.outputs = [t.name for t in manifest.whole.outputs]
        self.batch = manifest.input.batch  # the bounded batch axis, or None (static shapes)
        if cuda_graph and self.batch is not None:
            raise UserError(f"cuda_graph needs static shapes: a graph replays the batch it captured, and this "
                            f"export's batch is {self.batch}; export a static batch N (parnet-export --batch N) "
                            f"for CUDA graphs, or load without cuda_graph")
        self.runners: dict[str, StreamRunner] = {s.name: load_runner(s, 1) for s in self.specs}  # type: ignore[misc]
        self.workers = len(self.specs)
        devices = {str(r.device) for r in self.runners.values()}
        if len(devices) > 1:
            for r in self.runners.values():
                r.close()
            raise UserError(f"CUDA streams run on one GPU; these subgraphs are placed on {sorted(devices)}: use "
                            f"mode='distributed' (one process per GPU)")
        c = self.cuda
        first = self.runners[self.specs[0].name]
        self.streams = {ORIGIN: c.stream(first.device)} | {n: c.stream(r.device) for n, r in self.runners.items()}
        self.fork = c.event(False)
        self.done = {n: c.event(False) for n in self.runners}  # dependencies: valid inside a graph too
        self.stage_start = {n: c.event(True) for n in self.runners}
        self.stage_end = {n: c.event(True) for n in self.runners}
        self.call_start, self.call_end = c.event(True), c.event(True)
        self.gpu_time_ms: list[float] = []
        self._lock = threading.Lock()
        self.graph = None
        if cuda_graph:
            self.graph = self._capture()

    # -- enqueueing ---------------------------------------------------------------------------
    def _rows(self, buffer: Any, batch: int | None) -> Any:
        return buffer if batch is None else self.cuda.rows(buffer, batch)

    def _enqueue_all(self, timed: bool, batch: int | None = None) -> None:
        """Fork from the origin stream, run the DAG on the subgraph streams at ``batch``, join back."""
        c, origin = self.cuda, self.streams[ORIGIN]
        c.record(self.fork, origin)
        for spec in self.specs:
            name, runner, stream = spec.name, self.runners[spec.name], self.streams[spec.name]
            c.wait(stream, self.fork)
            fed = [(t.name, self.producer[t.name]) for t in spec.inputs if t.name in self.producer]  # not the image
            for producer in dict.fromkeys(p for _, p in fed):
                c.wait(stream, self.done[producer])
            if timed:  # the stage starts once its inputs are ready
                c.record(self.stage_start[name], stream)
            for tensor, producer in fed:
                src, dst = self.runners[producer].buffers[tensor], runner.buffers[tensor]
                if not c.same_buffer(src, dst):  # the producer's output into this input
                    c.copy(self._rows(dst, batch), self._rows(src, batch), stream)
            if batch is None:
                runner.enqueue(stream)  # static shapes: the call every StreamRunner takes
            else:
                runner.enqueue(stream, batch)
            if timed:  # before done: the origin joins on done, so this lies within the call's span
                c.record(self.stage_end[name], stream)
            c.record(self.done[name], stream)
        for name in self.runners:  # join: every stream's work is part of the origin's
            c.wait(origin, self.done[name])

    def _capture(self) -> Any:
        c = self.cuda
        self._enqueue_all(timed=False)  # warm-up outside the capture (first runs allocate)
        c.record(self.call_end, self.streams[ORIGIN])
        c.synchronize(self.call_end)
        graph = c.new_graph()
        try:
            with c.capture(graph, self.streams[ORIGIN]):
                self._enqueue_all(timed=False)
        except RuntimeError as e:  # asked for explicitly: say why, never fall back silently
            raise RuntimeFailure(f"CUDA graph capture of the {self.mode} run failed: {e}") from e
        return graph

    # -- calls --------------------------------------------------------------------------------
    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        c, origin = self.cuda, self.streams[ORIGIN]
        batch = batch_of(self.inputs, feeds, self.mode)  # out of bounds: refused before anything is queued
        with self._lock:
            for spec in self.specs:
                if any(t.name == self.input for t in spec.inputs):
                    c.upload(self._rows(self.runners[spec.name].buffers[self.input], batch), feeds[self.input],
                             origin)
            c.record(self.call_start, origin)
            if self.graph is not None:
                c.replay(self.graph, origin)
            else:
                self._enqueue_all(timed=True, batch=batch)
            c.record(self.call_end, origin)
            out = {name: c.download(self._rows(self.runners[self.producer[name]].buffers[name], batch), origin)
                   for name in self.outputs}
            c.synchronize(self.call_end)
            gpu_ms = c.elapsed_ms(self.call_start, self.call_end)
            self.gpu_time_ms.append(gpu_ms)
            if self.graph is not None:
                return out, [StageTime(GRAPH_STAGE, 0.0, gpu_ms / 1e3)]
            return out, [StageTime(n, c.elapsed_ms(self.call_start, self.stage_start[n]) / 1e3,
                                   c.elapsed_ms(self.call_start, self.stage_end[n]) / 1e3) for n in self.runners]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.infer_timed(feeds)[0]

    def close(self) -> None:
        for r in self.runners.values():
            r.close()
        self.graph = None
