"""Quick latency of one runner (median of a few calls on a seeded input): build-time decisions only."""

from __future__ import annotations

import time

import numpy as np

from ..backends import Runner


def median_ms(runner: Runner, iterations: int, warmup: int = 2) -> float:
    rng = np.random.default_rng(0)
    feeds = {t.name: rng.standard_normal(t.shape).astype(t.dtype) for t in runner.spec.inputs}
    for _ in range(warmup):
        runner.infer(feeds)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        runner.infer(feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)
