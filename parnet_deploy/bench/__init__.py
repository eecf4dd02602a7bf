"""Batch-1 latency benchmarks with trtexec semantics (warm-up by time, min iterations and duration)."""

from .stats import LatencyStats
from .timing import TimingConfig, measure, measure_interleaved

__all__ = ["LatencyStats", "TimingConfig", "measure", "measure_interleaved"]
