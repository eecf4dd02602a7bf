"""ONNX → OpenVINO compiled blob (``compiled.export_model()``) for one device.

A CPU blob keeps the transformed graph, not the compile options: ``import_model`` applies the
inference precision, threads and pinning given at import (without them: bf16 on this CPU and
all cores), whatever the blob was compiled with. The runner therefore passes them again; the
precision hint here only decides what the compile-time check exercises.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ...artifacts.engines_manifest import BuildOptions, DeviceRecord
from ...errors import UserError
from .config import compile_config, core, openvino, precision_hint, reason


def compile_onnx(source: Path, device: str, config: dict[str, str], batch: tuple[int, int] | None = None) -> Any:
    """``batch`` ``(min, max)``: the ONNX file's dynamic dim 0 becomes that bounded dimension (OpenVINO
    plans its memory for the bounds instead of for any size); ``(n, n)``: the static batch n."""
    ov = core()
    try:
        model = ov.read_model(str(source))
        if batch is not None:
            bounded = openvino().Dimension(batch[0]) if batch[0] == batch[1] else openvino().Dimension(*batch)
            model.reshape({port: openvino().PartialShape([bounded, *port.get_partial_shape()[1:]])
                           for port in model.inputs if port.get_partial_shape().rank.get_length() > 0
                           and port.get_partial_shape()[0].is_dynamic})
        return ov.compile_model(model, device, config)
    except RuntimeError as e:
        raise UserError(f"openvino cannot compile {source.name} for {device}: {reason(e)}") from e


def import_blob(blob: Path, device: str, config: dict[str, str]) -> Any:
    try:
        return core().import_model(blob.read_bytes(), device, config)
    except RuntimeError as e:
        raise UserError(f"openvino cannot import {blob.name} on {device} (built by another OpenVINO version or "
                        f"for another CPU? rebuild with parnet-build): {reason(e)}") from e


def build(source: Path, engine: Path, device: DeviceRecord, options: BuildOptions) -> None:
    if device.kind != "cpu":
        raise UserError(f"openvino builds for the CPU only, not {device.describe()}")
    config = compile_config("CPU", os.cpu_count() or 1, precision_hint(options.precision, "CPU"))
    batch = None if options.profile is None else (options.profile[0], options.profile[2])
    blob = compile_onnx(source, "CPU", config, batch).export_model()
    engine.write_bytes(blob.getvalue() if isinstance(blob, io.BytesIO) else bytes(blob))  # BytesIO since 2025
