"""CUDA-stream executor for TensorRT runners: the manifest DAG expressed with CUDA events.

Every subgraph has its own stream; a consumer's stream waits on its producers' ``done``
events, so independent streams overlap on one GPU; tensors that cross GPUs are copied on
the consumer's stream (peer copy through torch). Optionally the whole DAG is captured once
into a CUDA graph and replayed (falls back to plain enqueues when capture fails). Host
wall time and the GPU time between the first start and the last done event (CUDA events)
are both recorded. Needs an NVIDIA GPU: tests are marked gpu.
"""

from __future__ import annotations

import time

import numpy as np

from ...artifacts.export_manifest import ExportManifest
from ..base import LoadRunner, StageTime


class CudaStreamsExecutor:  # pragma: no cover - needs a GPU
    mode = "streams"

    def __init__(self, manifest: ExportManifest, load_runner: LoadRunner, parallelism: int = 4,
                 cuda_graph: bool = True):
        import torch

        self.torch = torch
        self.specs = list(manifest.subgraphs)
        self.runners = {s.name: load_runner(s, 1) for s in self.specs}
        self.workers = len(self.specs)
        self.input = manifest.input.name
        self.outputs = [t.name for t in manifest.whole.outputs]
        self.dag = manifest.dag
        self.gpu_time_ms: list[float] = []
        self.graph = None
        if cuda_graph:
            self.graph = self._capture()

    def _enqueue_all(self) -> None:
        for spec in self.specs:
            runner = self.runners[spec.name]
            waits = []
            for t in spec.inputs:
                src_name = self.dag.producer(t.name)
                if src_name == "input":
                    continue  # the image: copied in before
                src = self.runners[src_name]
                waits.append(src.done)
                if src.buffers[t.name].data_ptr() != runner.buffers[t.name].data_ptr():
                    with self.torch.cuda.stream(runner.stream):
                        runner.stream.wait_event(src.done)
                        runner.buffers[t.name].copy_(src.buffers[t.name], non_blocking=True)
            runner.enqueue(waits)

    def _capture(self):
        torch = self.torch
        try:
            self._enqueue_all()  # warm-up outside capture (TensorRT allocates on first run)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            first = self.runners[self.specs[0].name].stream
            with torch.cuda.graph(graph, stream=first):
                self._enqueue_all()
            return graph
        except Exception:  # capture is an optimisation: fall back to plain enqueues
            torch.cuda.synchronize()
            return None

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        torch = self.torch
        t0 = time.perf_counter()
        host = torch.from_numpy(np.ascontiguousarray(feeds[self.input]))
        for spec in self.specs:
            if any(t.name == self.input for t in spec.inputs):
                self.runners[spec.name].buffers[self.input].copy_(host)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._enqueue_all()
        last = self.runners[self.specs[-1].name]
        last.done.synchronize()
        out = {name: self.runners[self.dag.producer(name)].buffers[name].cpu().numpy() for name in self.outputs}
        wall = time.perf_counter() - t0
        starts = [self.runners[s.name].started for s in self.specs]
        self.gpu_time_ms.append(max(s.elapsed_time(self.runners[n.name].done) for s, n in zip(starts, self.specs)))
        return out, [StageTime("gpu", 0.0, wall)]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.infer_timed(feeds)[0]

    def close(self) -> None:
        for r in self.runners.values():
            r.close()
