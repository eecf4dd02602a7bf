"""Rows of a data set in the batches a model takes: gates and calibration run batched.

A dynamic-batch export takes any batch in ``min..max``, a static one exactly its batch. Rows go
in consecutive batches of the size asked for; a last batch below the smallest the model takes
is padded by repeating its last row, and the padded rows' outputs are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..artifacts.export_manifest import TensorSpec


def batch_bounds(spec: TensorSpec) -> tuple[int, int]:
    """``(min, max)`` batch of an input: its bounded axis, or its static dim 0 twice."""
    dim = spec.batch
    return (dim.min, dim.max) if dim is not None else (spec.shape[0],) * 2


def padded_batches(arrays: dict[str, np.ndarray], bounds: tuple[int, int],
                   size: int | None = None) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """``(feeds, rows)``: consecutive rows of every array, ``size`` at a time (default: the largest
    batch), padded to ``bounds[0]``; ``rows`` is how many leading rows are real."""
    lo, hi = bounds
    size = min(max(size or hi, lo), hi)
    total = len(next(iter(arrays.values())))
    for start in range(0, total, size):
        rows = min(size, total - start)
        take = np.arange(start, start + max(rows, lo)).clip(max=start + rows - 1)
        feeds = {n: np.ascontiguousarray(a[take] if rows < lo else a[start:start + rows]) for n, a in arrays.items()}
        yield feeds, rows
