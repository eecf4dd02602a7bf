"""Polygraphy-style comparison of run results: per-output error statistics and PASSED/FAILED.

Relative error is measured against the scale of the reference output
(``|a - b| / max|b|``): elementwise relative error is meaningless for logits near zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutputStats:
    name: str
    max_abs: float
    mean_abs: float
    max_rel: float   # max |a - b| / max |b|
    mean_rel: float  # mean |a - b| / mean |b|
    rtol: float

    @property
    def min_passing_rtol(self) -> float:
        """The smallest ``rtol`` this output would pass with."""
        return self.max_rel

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel)) and self.max_rel <= self.rtol


@dataclass(frozen=True)
class Comparison:
    label: str
    outputs: tuple[OutputStats, ...]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def report(self) -> str:
        lines = [f"  {self.label}"]
        for o in self.outputs:
            lines.append(
                f"    {o.name}: max abs {o.max_abs:.3e}, mean abs {o.mean_abs:.3e}, max rel {o.max_rel:.3e}, "
                f"mean rel {o.mean_rel:.3e} | min passing rtol {o.min_passing_rtol:.1e} (rtol {o.rtol:.0e}) "
                f"{'PASSED' if o.passed else 'FAILED'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"label": self.label, "passed": self.passed,
                "outputs": {o.name: {"max_abs": o.max_abs, "mean_abs": o.mean_abs, "max_rel": o.max_rel,
                                     "mean_rel": o.mean_rel, "rtol": o.rtol, "passed": o.passed}
                            for o in self.outputs}}


def compare(label: str, actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
            rtol: float | Mapping[str, float]) -> Comparison:
    """Compare every output present in ``expected``; a missing or misshapen output fails."""
    stats = []
    for name, ref in expected.items():
        tol = rtol[name] if isinstance(rtol, Mapping) else rtol
        out = actual.get(name)
        if out is None or np.shape(out) != np.shape(ref):
            stats.append(OutputStats(name, np.inf, np.inf, np.inf, np.inf, tol))
            continue
        ref64, diff = np.asarray(ref, np.float64), np.abs(np.asarray(out, np.float64) - np.asarray(ref, np.float64))
        scale_max, scale_mean = max(np.abs(ref64).max(), 1e-30), max(np.abs(ref64).mean(), 1e-30)
        stats.append(OutputStats(name, float(diff.max()), float(diff.mean()), float(diff.max() / scale_max),
                                 float(diff.mean() / scale_mean), tol))
    return Comparison(label, tuple(stats))
