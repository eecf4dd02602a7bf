"""Labeled and unlabeled image sources: ``digits`` (bundled with scikit-learn), ``.npz``, image folders."""

from .sources import Dataset, calibration_source, evaluation_source, load_source

__all__ = ["Dataset", "calibration_source", "evaluation_source", "load_source"]
