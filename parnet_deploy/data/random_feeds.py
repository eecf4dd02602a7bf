"""Inputs for checks and benchmarks when no data is given: one array per input spec."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..artifacts.export_manifest import TensorSpec


def random_feeds(specs: Iterable[TensorSpec], seed: int = 0, batch: int | None = None) -> dict[str, np.ndarray]:
    """Standard normal floats; zeros for integer and bool inputs (always a valid index or mask,
    where random integers could index out of range). ``batch``: of a dynamic-batch export (default:
    its smallest)."""
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal(t.shape_at(batch)).astype(t.dtype) if t.dtype.startswith("float")
            else np.zeros(t.shape_at(batch), t.dtype) for t in specs}
