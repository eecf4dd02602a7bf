"""ONNX Runtime "engine": the graph after ORT's full optimization, saved for one CPU.

The saved graph holds CPU-specific layouts (NCHWc blocks sized for the CPU's vector
width), so it is recorded with the CPU model and ORT version and checked on load.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def version() -> str:
    return ort.__version__


def build(onnx_path: Path, engine_path: Path, device_index: int | None, options: dict) -> None:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(engine_path)
    so.log_severity_level = 3
    providers = ["CPUExecutionProvider"] if device_index is None else [
        ("CUDAExecutionProvider", {"device_id": device_index}), "CPUExecutionProvider"]
    ort.InferenceSession(str(onnx_path), so, providers=providers)
