"""Samples for a model of any inputs (not only images): an ``.npz`` with one array per input.

Each array is named as the graph input it feeds and holds ``N`` samples along its first axis, each of
the input's shape without its batch dim: ``(N, *shape[1:])``, in the input's dtype (floats of
another width are converted). Calibration and accuracy gates of non-image exports read these, in
batches the graph takes (``data/batching.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts.export_manifest import TensorSpec
from ..errors import UserError

MAX_FEEDS_BYTES = 4 << 30  # the file, checked before numpy reads it


@dataclass(frozen=True, eq=False)
class FeedSet:
    arrays: dict[str, np.ndarray]  # input name → (N, *shape[1:])
    name: str
    labels: None = None  # unlabeled: gates compare against fp32 outputs

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def arrays_for(self, input_names: tuple[str, ...], limit: int | None = None) -> dict[str, np.ndarray]:
        """The first ``limit`` rows (default all) of the arrays of exactly these inputs."""
        if set(input_names) != set(self.arrays):
            raise UserError(f"{self.name}: holds {sorted(self.arrays)}, the model takes {sorted(input_names)}")
        return {n: self.arrays[n][:limit] for n in input_names}


def check_size(path: Path) -> None:
    """An .npz is size-checked before numpy reads it."""
    size = path.stat().st_size
    if size > MAX_FEEDS_BYTES:
        raise UserError(f"{path}: {size} bytes is over the {MAX_FEEDS_BYTES >> 30} GiB limit")


def load_feeds(source: str, inputs: tuple[TensorSpec, ...]) -> FeedSet:
    """Read ``source`` (an .npz) for a model whose inputs are ``inputs``; every refusal is one line."""
    path = Path(source)
    if path.suffix != ".npz" or not path.is_file():
        raise UserError(f"{source}: a model of inputs {', '.join(t.name for t in inputs)} takes an .npz with one "
                        f"array per input, named as the input, of shape (N, *input_shape[1:])")
    check_size(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            names = set(f.files)
            wanted = {t.name for t in inputs}
            if names != wanted:
                missing, extra = sorted(wanted - names), sorted(names - wanted)
                raise UserError(f"{path}: " + "; ".join(filter(None, [
                    f"no array for the inputs {missing}" if missing else "",
                    f"arrays {extra} name no input of the model" if extra else ""])))
            arrays = {t.name: _checked(path, t, f[t.name]) for t in inputs}
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npz of arrays ({str(e)[:200]})") from e
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1 or 0 in counts:
        raise UserError(f"{path}: every array needs the same number of samples (at least 1), got "
                        f"{ {n: len(a) for n, a in arrays.items()} }")
    return FeedSet(arrays, path.name)


def _checked(path: Path, spec: TensorSpec, a: np.ndarray) -> np.ndarray:
    if len(spec.shape) == 0:  # samples go along dim 0, batched as the graph takes them
        raise UserError(f"{path}: the input {spec.name!r} is a scalar; samples need a batch dim 0")
    if a.ndim != len(spec.shape) or tuple(a.shape[1:]) != tuple(spec.shape[1:]):
        expected = ", ".join(map(str, ("N", *spec.shape[1:])))
        raise UserError(f"{path}: {spec.name!r} is {list(a.shape)}, expected [{expected}]")
    want = np.dtype(spec.dtype)
    if a.dtype != want and not (a.dtype.kind == "f" and want.kind == "f"):
        raise UserError(f"{path}: {spec.name!r} is {a.dtype}, the input is {spec.dtype}")
    a = np.ascontiguousarray(a, want)
    if want.kind == "f" and not np.isfinite(a).all():
        raise UserError(f"{path}: {spec.name!r} contains NaN or inf")
    return a
