"""Top-1 / top-5 on a labeled set, and agreement with a reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data import Dataset


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    predictions: np.ndarray

    def agreement(self, other: "Accuracy") -> float:
        return float(np.mean(self.predictions == other.predictions))


def evaluate(run: Callable[[np.ndarray], np.ndarray], data: Dataset) -> Accuracy:
    """``run``: a (1, 3, H, W) image → logits (1, classes). Batch 1, as deployed."""
    logits = np.concatenate([run(np.ascontiguousarray(x)) for x in data.batches(1)])
    preds = logits.argmax(1)
    if data.labels is None:
        return Accuracy(float("nan"), float("nan"), preds)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return Accuracy(float(np.mean(preds == data.labels)), float(np.mean((top5 == data.labels[:, None]).any(1))),
                    preds)
