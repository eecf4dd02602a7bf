"""Runtime: executes exports (and engines) without PyTorch."""

from .api import MODES, ParnetRunner, load

__all__ = ["MODES", "ParnetRunner", "load"]
