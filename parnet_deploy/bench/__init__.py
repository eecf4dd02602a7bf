"""Latency benchmarks with trtexec semantics (warm-up by time, min iterations and duration), at batch 1 or N."""

from .stats import LatencyStats
from .timing import TimingConfig, measure, measure_interleaved

__all__ = ["LatencyStats", "TimingConfig", "measure", "measure_interleaved"]
