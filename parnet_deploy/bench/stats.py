"""Latency statistics (numpy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds. ``cv`` is the coefficient of variation (std / mean)."""

    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    cv: float
    count: int

    @classmethod
    def from_seconds(cls, samples) -> LatencyStats:
        ms = np.asarray(samples, dtype=np.float64) * 1e3
        if ms.size == 0:
            raise UserError("no latency samples: run at least one iteration")
        p = np.percentile(ms, [50, 90, 95, 99])
        mean = float(ms.mean())
        return cls(float(ms.min()), mean, float(p[0]), float(p[1]), float(p[2]), float(p[3]), float(ms.max()),
                   float(ms.std() / mean) if mean > 0 else 0.0, int(ms.size))

    @property
    def throughput_qps(self) -> float:
        """Calls per second when calls run back to back (at batch N, N images each)."""
        return 1e3 / self.mean

    def per_image(self, batch: int) -> LatencyStats:
        """Per-image latency of calls that carry ``batch`` images each: every time / batch (cv unchanged)."""
        return replace(self, **{k: getattr(self, k) / batch for k in ("min", "mean", "median", "p90", "p95", "p99",
                                                                      "max")})

    def images_per_s(self, batch: int) -> float:
        """Images per second at ``batch`` images a call, calls back to back: batch × calls/s."""
        return batch * self.throughput_qps

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("count")
        return d
