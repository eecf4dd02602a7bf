"""``parnet-bench --engine DIR --batch-sweep 1,2,4,8``: latency per call, per image and images/s
against the batch, every batch in one interleaved run (round-robin rounds, so load bursts and
thermal drift hit all batches alike)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.random_feeds import random_feeds
from ..runtime import load
from .batch import resolve_batch
from .environment import environment
from .stats import LatencyStats
from .timing import TimingConfig, measure_interleaved


@dataclass
class SweepRow:
    batch: int
    latency: LatencyStats  # per call
    samples_ms: list[float] = field(default_factory=list)

    @property
    def per_image(self) -> LatencyStats:
        return self.latency.per_image(self.batch)

    @property
    def images_per_s(self) -> float:
        return self.latency.images_per_s(self.batch)

    def to_dict(self) -> dict:
        return {"batch": self.batch, "iterations": self.latency.count, "latency_ms": self.latency.to_dict(),
                "throughput_qps": self.latency.throughput_qps, "per_image_latency_ms": self.per_image.to_dict(),
                "images_per_s": self.images_per_s}


@dataclass
class BatchSweepResult:
    path: str
    mode: str
    rows: list[SweepRow]
    environment: dict
    timing: TimingConfig
    rounds: int

    def relative(self, row: SweepRow) -> tuple[float, float]:
        """Against the smallest batch b0: (images/s ratio, per-call time / (batch / b0 × b0's per-call
        time), medians; below 1.0 one call of ``batch`` beats batch/b0 sequential calls of b0)."""
        base = self.rows[0]
        return (row.images_per_s / base.images_per_s,
                row.latency.median / (row.batch / base.batch * base.latency.median))

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            gain, call_ratio = self.relative(r)
            rows.append({**r.to_dict(), "images_per_s_vs_smallest": gain, "call_vs_sequential_smallest": call_ratio})
        return {"path": self.path, "mode": self.mode, "batches": [r.batch for r in self.rows], "rows": rows,
                "environment": self.environment, "rounds": self.rounds,
                "timing": {"warmup_s": self.timing.warmup_s, "min_iterations": self.timing.min_iterations,
                           "min_duration_s": self.timing.min_duration_s}}

    def table(self) -> str:
        b0 = self.rows[0].batch
        lines = [f"{self.path} [{self.mode}] batch sweep, {self.rounds} interleaved rounds",
                 f"  {'batch':>5}{'calls':>7}{'call med':>10}{'call p99':>10}{'image med':>11}{'images/s':>10}"
                 f"{'x img/s':>9}{'call/seq':>10}",
                 f"  {'':>5}{'':>7}{'(ms)':>10}{'(ms)':>10}{'(ms)':>11}{'':>10}{f'vs {b0}':>9}{f'vs {b0}':>10}"]
        for r in self.rows:
            gain, call_ratio = self.relative(r)
            lines.append(f"  {r.batch:>5}{r.latency.count:>7}{r.latency.median:>10.2f}{r.latency.p99:>10.2f}"
                         f"{r.per_image.median:>11.3f}{r.images_per_s:>10.1f}{gain:>9.2f}{call_ratio:>10.3f}")
        lines.append(f"  call/seq: one call at batch N / (N/{b0} sequential calls at batch {b0}), medians; "
                     "< 1.0: batching wins")
        return "\n".join(lines)


def bench_batch_sweep(path: str | Path, batches: Sequence[int], mode: str = "whole", backend: str | None = None,
                      threads: int | None = None, timing: TimingConfig = TimingConfig(), rounds: int = 5,
                      log: Callable[[str], None] = print, precision: str | None = None, device: str | None = None,
                      cuda_graph: bool = False) -> BatchSweepResult:
    """Each batch (within the export's bounds) timed with ``timing`` (its iterations and duration per
    batch, spread over ``rounds`` round-robin rounds), one runner for all."""
    timing.validate()
    batches = sorted(set(batches))
    with load(path, backend=backend, mode=mode, threads=threads, precision=precision, device=device,
              cuda_graph=cuda_graph) as runner:
        for b in batches:
            resolve_batch(runner.manifest, b, "--batch-sweep")
        inputs = []
        for b in batches:
            feeds = random_feeds(runner.manifest.whole.inputs, batch=b)
            inputs.append(next(iter(feeds.values())) if len(feeds) == 1 else feeds)
        log(f"benchmarking {path} [{mode}] at batch {', '.join(map(str, batches))}: warm-up {timing.warmup_s:g} s "
            f"each, then >= {timing.min_iterations} iterations and >= {timing.min_duration_s:g} s each, "
            f"in {rounds} interleaved rounds ...")
        samples = measure_interleaved([lambda x=x: runner.infer_timed(x) for x in inputs], timing, rounds, log)
        env = environment({"runtime": runner.backend.describe(), "workers": runner.executor.workers})
    rows = [SweepRow(b, LatencyStats.from_seconds(s), [t * 1e3 for t in s]) for b, s in zip(batches, samples)]
    return BatchSweepResult(str(path), mode, rows, env, timing, rounds)
