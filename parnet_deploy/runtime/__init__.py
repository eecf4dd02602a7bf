"""Runtime: executes exports and engines. Imports no PyTorch (but the distributed mode)."""

from .api import load
from .runner import MODES, ParnetRunner

__all__ = ["MODES", "ParnetRunner", "load"]
