"""Labeled and unlabeled image sources: ``digits`` (bundled with scikit-learn), ``.npz``, image folders."""

from .sources import Dataset, load_source

__all__ = ["Dataset", "load_source"]
