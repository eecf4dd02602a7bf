"""Executors: run a whole graph, or the per-stream subgraphs as the manifest DAG says.

Independent subgraphs run concurrently on a thread pool (ORT releases the GIL while it
computes). Both executors are safe to call from several threads at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np

from ..artifacts.export_manifest import ExportManifest, SubgraphSpec
from ..backends.base import Executor, LoadRunner, Runner, StageTime, concurrent_subgraphs
from ..errors import RuntimeFailure


class WholeExecutor:
    mode = "whole"
    workers = 1
    gpu_time_ms = None

    def __init__(self, manifest: ExportManifest, load_runner: LoadRunner):
        self.runner = load_runner(manifest.whole, 1)
        self.outputs = [t.name for t in manifest.whole.outputs]

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        t0 = time.perf_counter()
        out = self.runner.infer(feeds)
        return out, [StageTime("model", 0.0, time.perf_counter() - t0)]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner.infer(feeds)

    def close(self) -> None:
        self.runner.close()


class StreamsExecutor:
    """One runner per subgraph; a subgraph starts as soon as all its inputs exist."""

    mode = "streams"
    gpu_time_ms = None

    def __init__(self, manifest: ExportManifest, load_runner: LoadRunner, parallelism: int,
                 workers: int | None = None):
        self.specs: list[SubgraphSpec] = list(manifest.subgraphs)
        self.workers = workers or concurrent_subgraphs(manifest.dag.width, parallelism)
        self.runners: dict[str, Runner] = {s.name: load_runner(s, self.workers) for s in self.specs}
        self.outputs = [t.name for t in manifest.whole.outputs]
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="parnet-stream")

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        if self.workers == 1:
            return self._infer_in_order(feeds)
        t0 = time.perf_counter()
        values = dict(feeds)
        pending = list(self.specs)
        running: dict[Future, SubgraphSpec] = {}
        times: list[StageTime] = []

        def run(spec: SubgraphSpec, inputs: dict[str, np.ndarray]):
            start = time.perf_counter() - t0
            out = self.runners[spec.name].infer(inputs)
            return out, StageTime(spec.name, start, time.perf_counter() - t0)

        while pending or running:
            for spec in [s for s in pending if all(t.name in values for t in s.inputs)]:
                pending.remove(spec)
                running[self._pool.submit(run, spec, {t.name: values[t.name] for t in spec.inputs})] = spec
            if not running:
                raise RuntimeFailure(f"DAG cannot make progress; waiting: {[s.name for s in pending]}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                running.pop(fut)
                out, st = fut.result()
                values.update(out)
                times.append(st)
        return {name: values[name] for name in self.outputs}, times

    def _infer_in_order(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]:
        """One subgraph at a time in the calling thread: no thread handoffs at all."""
        t0 = time.perf_counter()
        values = dict(feeds)
        times = []
        for spec in self.specs:  # a valid execution order
            start = time.perf_counter() - t0
            values.update(self.runners[spec.name].infer({t.name: values[t.name] for t in spec.inputs}))
            times.append(StageTime(spec.name, start, time.perf_counter() - t0))
        return {name: values[name] for name in self.outputs}, times

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.infer_timed(feeds)[0]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for r in self.runners.values():
            r.close()


# mode → (manifest, load_runner, parallelism) → executor; only streams have a use for the parallelism
EXECUTORS: dict[str, Callable[[ExportManifest, LoadRunner, int], Executor]] = {
    "whole": lambda manifest, load_runner, parallelism: WholeExecutor(manifest, load_runner),
    "streams": StreamsExecutor,
}
