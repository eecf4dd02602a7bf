"""Timing loops. ``time.perf_counter`` around the whole synchronous call (host wall time)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_ITERATIONS = 10_000_000  # a million calls of a 0.1 ms model is 100 s; ten million is plenty
MAX_SECONDS = 24 * 3600.0  # a run that would outlast a day is a typo


@dataclass(frozen=True)
class TimingConfig:
    """trtexec semantics: warm up for ``warmup_s``, then run until at least ``min_iterations``
    calls *and* ``min_duration_s`` seconds are done."""

    warmup_s: float = 1.0
    min_iterations: int = 50
    min_duration_s: float = 3.0

    def validate(self) -> None:
        from ..errors import UserError

        if not (0 <= self.warmup_s <= MAX_SECONDS and 0 <= self.min_duration_s <= MAX_SECONDS
                and 1 <= self.min_iterations <= MAX_ITERATIONS):
            raise UserError(f"warm-up and duration must be from 0 to {MAX_SECONDS:g} s, and iterations from 1 to "
                            f"{MAX_ITERATIONS}; got {self.warmup_s}, {self.min_duration_s}, {self.min_iterations}")


def _warm_up(fn: Callable[[], object], seconds: float) -> None:
    fn()  # at least once: first calls allocate
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()


def measure(fn: Callable[[], object], config: TimingConfig = TimingConfig()) -> list[float]:
    """Seconds per call."""
    _warm_up(fn, config.warmup_s)
    return measure_block(fn, config)


def measure_interleaved(fns: Sequence[Callable[[], object]], config: TimingConfig = TimingConfig(),
                        rounds: int = 5, progress: Callable[[str], None] | None = None) -> list[list[float]]:
    """Like :func:`measure` for several candidates, in round-robin blocks, so that a slow
    drift of the machine (thermal, other load) hits all of them alike. Ratios between
    candidates measured this way are the numbers to quote."""
    for fn in fns:
        _warm_up(fn, config.warmup_s)
    per_round = TimingConfig(0.0, max(1, -(-config.min_iterations // rounds)), config.min_duration_s / rounds)
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        for i, fn in enumerate(fns):
            samples[i] += measure_block(fn, per_round)
        if progress:
            progress(f"round {r + 1}/{rounds} done")
    return samples


def measure_block(fn: Callable[[], object], config: TimingConfig) -> list[float]:
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < config.min_iterations or time.perf_counter() - start < config.min_duration_s:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples
