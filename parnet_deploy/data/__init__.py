"""Labeled and unlabeled image sources: ``digits`` (bundled with scikit-learn), ``.npz``, image folders;
and feeds for models of any inputs (``feeds.py``)."""

from .feeds import FeedSet, load_feeds
from .sources import Dataset, calibration_source, evaluation_source, load_source

__all__ = ["Dataset", "FeedSet", "calibration_source", "evaluation_source", "load_feeds", "load_source"]
