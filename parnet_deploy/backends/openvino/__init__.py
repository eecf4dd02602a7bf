"""OpenVINO backend (optional: ``pip install openvino``); imports without it."""

from .backend import OpenVinoBackend

__all__ = ["OpenVinoBackend"]
