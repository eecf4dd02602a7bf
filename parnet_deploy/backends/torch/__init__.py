"""PyTorch backend: the deploy-form model itself, sliced at the export's cut points (CPU or CUDA)."""

from .backend import TorchBackend

__all__ = ["TorchBackend"]
