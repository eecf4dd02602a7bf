"""Top-1 / top-5 on a labeled set, and agreement with a reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data import Dataset, FeedSet
from ..data.batching import padded_batches


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    predictions: np.ndarray

    def agreement(self, other: Accuracy) -> float:
        return float(np.mean(self.predictions == other.predictions))


def drop_against_fp32(top1_fp32: float | None, reduced: Accuracy, agreement: float | None,
                      labeled: bool) -> tuple[float, str]:
    """The gate's measure, in points: top-1 lost on labeled data, disagreement with fp32 otherwise."""
    if labeled:
        drop = (top1_fp32 - reduced.top1) * 100
        summary = f"top-1 {reduced.top1:.2%} vs fp32 {top1_fp32:.2%} (drop {drop:.2f} points)"
        return drop, summary + (f", agreement {agreement:.2%}" if agreement is not None else "")
    drop = (1 - (agreement or 0.0)) * 100
    return drop, f"agreement with fp32 {agreement:.2%} (unlabeled data)"


def evaluate(run: Callable[[np.ndarray], np.ndarray], data: Dataset, bounds: tuple[int, int] = (1, 1)) -> Accuracy:
    """``run``: (N, 3, H, W) images → logits (N, classes), N in ``bounds`` (``batch_bounds`` of the
    model's input): batches as large as the model takes (the same logits row by row as batch 1)."""
    logits = np.concatenate([run(feeds["x"])[:rows] for feeds, rows in padded_batches({"x": data.images}, bounds)])
    preds = logits.argmax(1)
    if data.labels is None:
        return Accuracy(float("nan"), float("nan"), preds)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return Accuracy(float(np.mean(preds == data.labels)), float(np.mean((top5 == data.labels[:, None]).any(1))),
                    preds)


def outputs_of(run: Callable[[dict], dict], data: FeedSet, names: tuple[str, ...],
               bounds: tuple[int, int] = (1, 1)) -> list[dict[str, np.ndarray]]:
    """``run`` (feeds → outputs by name) on every sample, in order, batched as :func:`evaluate`."""
    return [{k: v[:rows] for k, v in run(feeds).items()}
            for feeds, rows in padded_batches(data.arrays_for(names), bounds)]


def relative_error(reduced: list[dict[str, np.ndarray]], reference: list[dict[str, np.ndarray]]) -> float:
    """The gate's measure for models that are not classifiers: the worst output's ``‖q − f‖₂ / ‖f‖₂``
    over all samples together (integer and bool outputs: the fraction of elements that differ)."""
    worst = 0.0
    for name in reference[0]:
        f = np.concatenate([r[name].ravel() for r in reference])
        q = np.concatenate([r[name].ravel() for r in reduced])
        if f.dtype.kind == "f":
            f64, q64 = f.astype(np.float64), q.astype(np.float64)
            err = float(np.linalg.norm(q64 - f64) / max(np.linalg.norm(f64), 1e-30))
        else:
            err = float(np.mean(q != f))
        worst = max(worst, err)
    return worst
