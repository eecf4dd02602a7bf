"""Image sources for training, calibration and accuracy.

- ``digits`` / ``digits:train`` / ``digits:heldout``: scikit-learn's bundled 8x8 digits (no
  download), upsampled to 32x32 (nearest, 4x), grey copied to 3 channels, fixed split:
  stratified, 20% held out, seed 0 (1437 / 360 images).
- ``file.npz``: arrays ``images`` (N, 3, H, W) float32 (already normalised) and optional ``labels`` (N,).
- a folder: ``<folder>/<class>/*.png|jpg`` (class index = sorted folder names), resized to the
  model's resolution, scaled to [0, 1] and normalised with the export's mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts.export_manifest import normalize_u8
from ..errors import UserError
from .feeds import check_size

DIGITS_SPLIT_SEED = 0
DIGITS_HELDOUT = 0.2
DIGITS_MEAN, DIGITS_STD = 0.3, 0.4  # of pixel / 16 over the whole set: close enough to centre it


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # (N, 3, H, W) float32, normalised
    labels: np.ndarray | None  # (N,) int64
    name: str

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, size: int = 1):
        for i in range(0, len(self), size):
            yield self.images[i:i + size]

    def arrays_for(self, input_names: tuple[str, ...], limit: int | None = None) -> dict[str, np.ndarray]:
        """``{input: the first limit images}`` for a model of one input."""
        if len(input_names) != 1:
            raise UserError(f"{self.name}: images feed a model of one input; this one has {len(input_names)} "
                            f"({', '.join(input_names)}): give an .npz with one array per input")
        return {input_names[0]: self.images[:limit]}


def _digits(part: str) -> Dataset:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise UserError("the digits source needs scikit-learn: pip install scikit-learn") from e
    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0 - DIGITS_MEAN) / DIGITS_STD
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)  # 8x8 -> 32x32
    x = np.ascontiguousarray(np.repeat(x[:, None], 3, axis=1))
    y = data.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_HELDOUT, random_state=DIGITS_SPLIT_SEED, stratify=y)
    if part == "train":
        return Dataset(xtr, ytr, "digits:train")
    if part in ("heldout", ""):
        return Dataset(xte, yte, "digits:heldout")
    raise UserError(f"unknown digits part {part!r}; use digits:train or digits:heldout")


def _npz(path: Path) -> Dataset:
    check_size(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            images = f["images"].astype(np.float32)
            labels = f["labels"].astype(np.int64) if "labels" in f else None
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: expected an .npz with 'images' (N,3,H,W) and optional 'labels': {e}") from e
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserError(f"{path}: 'images' must be (N, 3, H, W), got {images.shape}")
    return Dataset(np.ascontiguousarray(images), labels, path.name)


def _folder(path: Path, resolution: tuple[int, int], mean, std) -> Dataset:
    from PIL import Image

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((path / c).iterdir())
             if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")]
    if not classes:  # a flat folder: unlabeled (calibration)
        files = [(f, -1) for f in sorted(path.iterdir()) if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")]
    if not files:
        raise UserError(f"{path}: no images (expected <folder>/<class>/*.png or a flat folder of images)")
    h, w = resolution
    images = [normalize_u8(np.asarray(Image.open(f).convert("RGB").resize((w, h))), mean, std) for f, _ in files]
    labels = np.asarray([i for _, i in files], np.int64)
    return Dataset(np.stack(images).astype(np.float32), None if classes == [] else labels, path.name)


def calibration_source(calib: str) -> str:
    """``digits`` calibrates on its training split."""
    return "digits:train" if calib == "digits" else calib


def evaluation_source(calib: str | None, eval_source: str | None) -> str | None:
    """The set an accuracy gate judges on: ``eval_source``, else digits' held-out split, else ``calib``."""
    if eval_source:
        return eval_source
    return "digits:heldout" if calib == "digits" else calib


def load_source(source: str, resolution: tuple[int, int] | None = None, mean=(0.485, 0.456, 0.406),
                std=(0.229, 0.224, 0.225)) -> Dataset:
    if source == "digits" or source.startswith("digits:"):
        data = _digits(source.partition(":")[2])
    else:
        path = Path(source)
        if path.suffix == ".npz" and path.is_file():
            data = _npz(path)
        elif path.is_dir():
            data = _folder(path, resolution or (224, 224), mean, std)
        else:
            raise UserError(f"unknown data source {source!r}: use digits, a .npz file or a folder of images")
    if len(data) == 0:
        raise UserError(f"{data.name}: no images")
    if not np.isfinite(data.images).all():
        raise UserError(f"{data.name}: images contain NaN or inf")
    if resolution is not None and data.images.shape[2:] != tuple(resolution):
        raise UserError(f"{data.name}: images are {data.images.shape[2]}x{data.images.shape[3]}, the model takes "
                        f"{resolution[0]}x{resolution[1]}")
    return data
