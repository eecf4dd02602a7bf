"""Quick latency of runners (median over seeded calls): build-time decisions only.

Candidates are measured interleaved, round after round, so that a burst of other load on a
shared machine hits all of them alike instead of deciding the comparison.
"""

from __future__ import annotations

import time

import numpy as np

from ..backends import Runner
from ..data.random_feeds import random_feeds


def _feeds(runner: Runner) -> dict[str, np.ndarray]:
    """Seeded inputs; a dynamic-batch graph at its largest batch (what its buffers are sized for)."""
    dim = runner.spec.inputs[0].batch
    return random_feeds(runner.spec.inputs, batch=None if dim is None else dim.max)


def median_ms_interleaved(runners: list[Runner], iterations: int, rounds: int = 5, warmup: int = 5) -> list[float]:
    feeds = [_feeds(r) for r in runners]
    for r, f in zip(runners, feeds):
        for _ in range(warmup):
            r.infer(f)
    samples: list[list[float]] = [[] for _ in runners]
    per_round = max(1, -(-iterations // rounds))
    for _ in range(rounds):
        for i, (r, f) in enumerate(zip(runners, feeds)):
            for _ in range(per_round):
                t0 = time.perf_counter()
                r.infer(f)
                samples[i].append(time.perf_counter() - t0)
    return [float(np.median(s) * 1e3) for s in samples]


def median_ms(runner: Runner, iterations: int) -> float:
    return median_ms_interleaved([runner], iterations, rounds=1)[0]
