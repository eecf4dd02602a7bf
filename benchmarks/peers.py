"""Extra rows for the Table-3 comparison: torch.compile, OpenVINO bf16, int8 on every CPU backend.

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
    """OpenVINO fp32 is a backend row of the comparison already; bf16 (its inference-precision
    hint) is added here, on CPUs with native bf16."""
    from parnet_deploy.backends import available_backends
    from parnet_deploy.hardware import native_bf16
    from parnet_deploy.runtime import load

    if "openvino" not in available_backends("cpu") or not native_bf16():
        log("OpenVINO bf16 row skipped (needs openvino and a CPU with native bf16)")
        return []
    d, _ = export_model(model, ExportConfig(output=workdir, name="openvino", resolution=resolution, verify=False),
                        log=lambda _: None)
    r = load(d, backend="openvino", precision="bf16", threads=threads)
    return [Candidate("openvino bf16 whole", r, precision="bf16", close=r.close)]


def int8(model: ParNet, workdir: Path, resolution: tuple[int, int], threads: int,
         log: Callable[[str], None]) -> list[Candidate]:
    """The one int8 Q/DQ graph on every CPU backend. Weights are random here, so accuracy is not
    judged in these rows (it is measured on digits by parnet-eval and the gates); latency is."""
    from parnet_deploy.backends import available_backends
    from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export
    from parnet_deploy.runtime import load

    d, _ = export_model(model, ExportConfig(output=workdir, name="int8src", resolution=resolution, verify=False),
                        log=lambda _: None)
    calib = workdir / "calib.npz"
    rng = np.random.default_rng(0)
    np.savez(calib, images=rng.standard_normal((16, 3, *resolution)).astype(np.float32))
    q, _ = quantize_export(d, QuantizeConfig(calib=str(calib), max_drop=100.0, output=workdir), log=lambda _: None)
    out = []
    for backend in available_backends("cpu"):
        r = load(q, backend=backend, threads=threads)
        out.append(Candidate(f"{backend} int8 whole (s8 Q/DQ)", r, precision="int8", close=r.close))
    return out
