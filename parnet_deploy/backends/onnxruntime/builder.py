"""ONNX Runtime "engine": the graph after ORT's full optimization, saved for one CPU.

The saved graph holds CPU-specific layouts (NCHWc blocks sized for the CPU's vector
width), so it is recorded with the CPU model and ORT version and checked on load.
"""

from __future__ import annotations

from pathlib import Path

from ...artifacts.engines_manifest import BuildOptions, DeviceRecord
from .runner import create_session, providers_for


def build(source: Path, engine: Path, device: DeviceRecord, options: BuildOptions) -> None:
    providers = providers_for("cpu" if device.kind == "cpu" else f"cuda:{device.index}")
    create_session(source, 1, providers, optimized_path=engine)
