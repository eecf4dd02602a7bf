"""Peers a CPU user would pick instead of us: torch.compile and OpenVINO (fp32, bf16).

Each is optional: a missing package or a failing compile is reported, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from parnet_deploy.bench.compare import Candidate
from parnet_deploy.export.pipeline import ExportConfig, export_model
from parnet_deploy.models import ParNet
from parnet_deploy.reparam import reparameterize


def torch_compile(model: ParNet, log: Callable[[str], None]) -> list[Candidate]:
    try:
        compiled = torch.compile(reparameterize(model))
        x = torch.zeros(1, 3, model.config.default_resolution, model.config.default_resolution)
        with torch.inference_mode():
            compiled(x)
    except Exception as e:  # inductor needs a C++ toolchain; report and go on
        log(f"torch.compile unavailable: {str(e).splitlines()[0][:120]}")
        return []

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return compiled(torch.from_numpy(x)).numpy()

    return [Candidate("torch.compile deploy form (inductor)", run)]


def openvino(model: ParNet, workdir: Path, resolution: tuple[int, int], threads: int,
             log: Callable[[str], None]) -> list[Candidate]:
    try:
        import openvino as ov
    except ImportError:
        log("OpenVINO not installed (pip install openvino): peer rows skipped")
        return []
    d, _ = export_model(model, ExportConfig(output=workdir, name="openvino", resolution=resolution, verify=False),
                        log=lambda _: None)
    core = ov.Core()
    out = []
    for precision, hint in (("fp32", "f32"), ("bf16", "bf16")):
        compiled = core.compile_model(str(d / "model.onnx"), "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        actual = compiled.get_property("INFERENCE_PRECISION_HINT")

        def run(x: np.ndarray, request=request) -> np.ndarray:
            return request.infer({0: x})[0].copy()

        out.append(Candidate(f"OpenVINO {precision} (runs {actual.to_string()})", run, precision=precision))
    return out


def int8(model: ParNet, workdir: Path, resolution: tuple[int, int], threads: int,
         log: Callable[[str], None]) -> list[Candidate]:
    """Our int8 build (ORT u8s8 Q/DQ). Weights are random here, so accuracy is not judged in
    this row (it is measured on digits by parnet-eval and the int8 build's gate); latency is."""
    from parnet_deploy.engines.build import BuildConfig, build_engines
    from parnet_deploy.runtime import load

    d, _ = export_model(model, ExportConfig(output=workdir, name="int8src", resolution=resolution, verify=False),
                        log=lambda _: None)
    calib = workdir / "calib.npz"
    rng = np.random.default_rng(0)
    np.savez(calib, images=rng.standard_normal((16, 3, *resolution)).astype(np.float32))
    e, _ = build_engines(d, BuildConfig(output=workdir / "engines", precision="int8", calib=str(calib),
                                        max_drop=100.0, measure_iterations=1), log=lambda _: None)
    out = []
    for mode in ("whole", "streams"):
        r = load(e, mode=mode, threads=threads)
        out.append(Candidate(f"onnxruntime int8 {mode} (Q/DQ u8s8)", r, precision="int8", close=r.close))
    return out
