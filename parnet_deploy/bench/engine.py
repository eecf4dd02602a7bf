"""``parnet-bench --engine DIR [--batch N]``: latency of one runner, with a per-stage breakdown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts.export_manifest import ExportManifest
from ..backends import StageTime
from ..backends.cuda_streams import GRAPH_STAGE
from ..data.random_feeds import random_feeds
from ..runtime import load
from .batch import resolve_batch
from .environment import environment
from .stats import LatencyStats
from .timing import TimingConfig, measure

HIGH_CV = 0.10
OVERHEAD_SHARE = 0.10


@dataclass(frozen=True)
class StageSummary:
    name: str
    median_ms: float
    p99_ms: float
    start_ms: float  # median offset from the start of the call

    def to_dict(self) -> dict:
        return {"name": self.name, "median_ms": self.median_ms, "p99_ms": self.p99_ms, "start_ms": self.start_ms}


@dataclass
class EngineBenchResult:
    path: str
    mode: str
    schedule: str  # "sequential", "waves of up to N" or "N concurrent"
    latency: LatencyStats
    stages: list[StageSummary]
    handoffs: dict[str, float]  # "producer->consumer": median gap in ms
    critical_path: list[str]
    critical_path_ms: float
    environment: dict
    timing: TimingConfig
    warnings: list[str] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)
    gpu_compute: LatencyStats | None = None  # CUDA events around the device work, beside host wall time
    batch: int = 1  # images a call

    @property
    def per_image(self) -> LatencyStats:
        return self.latency.per_image(self.batch)

    @property
    def images_per_s(self) -> float:
        return self.latency.images_per_s(self.batch)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "mode": self.mode, "schedule": self.schedule, "batch": self.batch,
            "latency_ms": self.latency.to_dict(), "throughput_qps": self.latency.throughput_qps,
            "per_image_latency_ms": self.per_image.to_dict(), "images_per_s": self.images_per_s,
            "iterations": self.latency.count,
            "stages": [s.to_dict() for s in self.stages], "handoffs_ms": self.handoffs,
            "critical_path": {"stages": self.critical_path, "ms": self.critical_path_ms},
            "environment": self.environment,
            "timing": {"warmup_s": self.timing.warmup_s, "min_iterations": self.timing.min_iterations,
                       "min_duration_s": self.timing.min_duration_s},
            "warnings": self.warnings,
            "gpu_compute_ms": self.gpu_compute.to_dict() if self.gpu_compute else None,
        }

    def table(self) -> str:
        lat = self.latency
        img = self.per_image
        lines = [f"{self.path} [{self.mode}, {self.schedule}, batch {self.batch}]  {lat.count} iterations",
                 f"  latency ms   min {lat.min:.2f} | mean {lat.mean:.2f} | median {lat.median:.2f} | "
                 f"p90 {lat.p90:.2f} | p95 {lat.p95:.2f} | p99 {lat.p99:.2f} | max {lat.max:.2f} | cv {lat.cv:.1%}",
                 f"  throughput   {lat.throughput_qps:.1f} qps (batch {self.batch}, back to back)",
                 *([f"  per image    median {img.median:.3f} ms | mean {img.mean:.3f} ms (per call / {self.batch}) "
                    f"| {self.images_per_s:.1f} images/s"] if self.batch != 1 else []),
                 *([f"  gpu compute  median {self.gpu_compute.median:.3f} ms | p99 {self.gpu_compute.p99:.3f} ms "
                    f"(CUDA events; host wall time above)"] if self.gpu_compute else []),
                 f"  {'stage':<10}{'start':>9}{'median':>9}{'p99':>9}   (ms)"]
        for s in self.stages:
            mark = " *" if s.name in self.critical_path else ""
            lines.append(f"  {s.name:<10}{s.start_ms:>9.2f}{s.median_ms:>9.2f}{s.p99_ms:>9.2f}{mark}")
        if self.handoffs:
            lines.append("  handoffs     " + ", ".join(f"{k} {v:.3f}" for k, v in self.handoffs.items()))
        if self.critical_path:
            lines.append(f"  critical path (*) {' -> '.join(self.critical_path)}: {self.critical_path_ms:.2f} ms"
                         + (" (reachable with one device per stream)" if not self.schedule.endswith("concurrent")
                            and self.mode != "whole" else ""))
        else:
            lines.append("  critical path: not measured (stages on other ranks are timed by their own process)")
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def summarize_stages(calls: list[list[StageTime]], order: list[str]) -> list[StageSummary]:
    out = []
    for name in order:
        durations = [s.ms for call in calls for s in call if s.name == name]
        if not durations:  # ran in another process (distributed mode): not timed here
            continue
        starts = [s.start * 1e3 for call in calls for s in call if s.name == name]
        out.append(StageSummary(name, float(np.median(durations)), float(np.percentile(durations, 99)),
                                float(np.median(starts))))
    return out


def schedule_waves(executor, manifest: ExportManifest, mode: str) -> tuple[tuple[str, ...], ...] | None:
    """The subgraphs in the groups the executor runs one after another (each group's members at once):
    one at a time, each alone; an executor that runs the DAG in waves says so (openvino/chain.py);
    None for the whole graph and for a DAG run as it allows."""
    if mode == "whole":
        return None
    waves = getattr(executor, "waves", None)
    if waves is None and executor.workers == 1:
        waves = tuple((s.name,) for s in manifest.subgraphs)
    return waves


def handoffs(manifest: ExportManifest, calls: list[list[StageTime]],
             waves: tuple[tuple[str, ...], ...] | None) -> dict[str, float]:
    """Median gap (ms) between a producer finishing and its consumer starting.

    Run in ``waves`` (one at a time: waves of one), each member of a wave hands over to each of the
    next; run as the DAG allows, along the DAG's edges.
    """
    if waves:
        pairs = [(a, b) for wave, after in zip(waves, waves[1:]) for a in wave for b in after]
    else:
        pairs = [(e.producer, c) for e in manifest.dag.edges for c in e.consumers if e.producer != "input"]
    gaps: dict[str, list[float]] = {}
    for call in calls:
        by_name = {s.name: s for s in call}
        for producer, consumer in pairs:
            if producer not in by_name or consumer not in by_name:
                continue
            gap = (by_name[consumer].start - by_name[producer].end) * 1e3
            gaps.setdefault(f"{producer}->{consumer}", []).append(gap)
    return {k: float(np.median(v)) for k, v in gaps.items()}


def critical_path(manifest: ExportManifest, stages: list[StageSummary], mode: str) -> tuple[list[str], float]:
    """Longest chain of median stage times through the DAG (one stage: itself)."""
    duration = {s.name: s.median_ms for s in stages}
    if mode == "whole" or [s.name for s in stages] == [GRAPH_STAGE]:
        return [stages[0].name], stages[0].median_ms
    if any(s.name not in duration for s in manifest.subgraphs):
        return [], 0.0  # some stages ran in other processes
    producers = {s.name: [p for p in manifest.dag.predecessors(s.name) if p in duration] for s in manifest.subgraphs}
    finish: dict[str, float] = {}
    best_prev: dict[str, str | None] = {}
    for s in manifest.subgraphs:  # execution order
        prev = max(producers[s.name], key=lambda p: finish[p], default=None)
        finish[s.name] = duration[s.name] + (finish[prev] if prev else 0.0)
        best_prev[s.name] = prev
    node: str | None = max(finish, key=finish.get)
    total = finish[node]
    path = []
    while node is not None:
        path.append(node)
        node = best_prev[node]
    return path[::-1], total


def diagnose(latency: LatencyStats, compute_ms: float, mode: str) -> list[str]:
    """trtexec-style self-diagnosis. ``compute_ms``: what the schedule needs if handoffs were free."""
    warnings = []
    if latency.cv > HIGH_CV:
        warnings.append(f"high variation (cv {latency.cv:.0%} > {HIGH_CV:.0%}): other load on the machine or "
                        f"frequency scaling; compare ratios from one run, not absolute numbers")
    overhead = latency.median - compute_ms
    if mode == "streams" and overhead > OVERHEAD_SHARE * latency.median:
        warnings.append(f"overhead-bound: {overhead:.2f} ms ({overhead / latency.median:.0%}) of each call is "
                        f"spent outside the critical path's compute (scheduling, handoffs, contention)")
    return warnings


def bench_engine(path: str | Path, mode: str = "whole", backend: str | None = None, threads: int | None = None,
                 timing: TimingConfig = TimingConfig(), log: Callable[[str], None] = print,
                 precision: str | None = None, device: str | None = None,
                 cuda_graph: bool = False, batch: int | None = None) -> EngineBenchResult:
    """``batch``: images a call, within a dynamic export's bounds or a static export's own (None: the
    export's smallest batch)."""
    timing.validate()
    with load(path, backend=backend, mode=mode, threads=threads, precision=precision, device=device,
              cuda_graph=cuda_graph) as runner:
        batch = resolve_batch(runner.manifest, batch)
        feeds = random_feeds(runner.manifest.whole.inputs, batch=batch)
        # an image model is called as users call it (an array); any other with its feeds by name
        x = next(iter(feeds.values())) if len(feeds) == 1 else feeds
        calls: list[list[StageTime]] = []

        def call() -> None:
            calls.append(runner.infer_timed(x)[1])

        log(f"benchmarking {path} [{mode}, batch {batch}]: warm-up {timing.warmup_s:g} s, then >= "
            f"{timing.min_iterations} iterations and >= {timing.min_duration_s:g} s ...")
        samples = measure(call, timing)
        calls = calls[-len(samples):]  # drop the warm-up calls
        latency = LatencyStats.from_seconds(samples)
        order = ["model"] if mode == "whole" else [s.name for s in runner.manifest.subgraphs]
        if cuda_graph:
            order = [GRAPH_STAGE]
        stages = summarize_stages(calls, order)
        path_names, path_ms = critical_path(runner.manifest, stages, mode)
        workers = runner.executor.workers
        waves = schedule_waves(runner.executor, runner.manifest, mode)
        duration = {s.name: s.median_ms for s in stages}
        if waves and all(n in duration for wave in waves for n in wave):  # a wave lasts as its longest member
            compute_ms = sum(max(duration[n] for n in wave) for wave in waves)
        else:  # some stages timed elsewhere (distributed), or one replayed graph
            compute_ms = sum(duration.values()) if workers == 1 else path_ms
        schedule = ("one session" if mode == "whole" else "sequential" if workers == 1
                    else f"waves of up to {workers}" if waves else f"{workers} concurrent")
        env = environment({"runtime": runner.backend.describe(), "workers": workers})
        gpu = runner.executor.gpu_time_ms  # CUDA-event compute time (CUDA-stream executor)
        gpu_stats = LatencyStats.from_seconds(np.asarray(gpu[-len(samples):]) / 1e3) if gpu else None
        return EngineBenchResult(
            str(path), mode, schedule, latency, stages,
            handoffs(runner.manifest, calls, waves) if mode != "whole" else {}, path_names, path_ms, env,
            timing, diagnose(latency, compute_ms, mode), [s * 1e3 for s in samples], gpu_stats, batch)
