"""``parnet_deploy.runtime.load(path)``: a ready-to-call runner over an export or engine directory."""

from __future__ import annotations

from pathlib import Path

from ..artifacts.engines_manifest import is_engine_dir
from ..artifacts.export_manifest import load_manifest
from ..backends import backend_class
from ..errors import UserError
from .engines import open_engines
from .runner import ParnetRunner


def load(path: str | Path, backend: str | None = None, mode: str = "whole", threads: int | None = None,
         device: str | None = None, precision: str | None = None, timeout_s: float = 30.0,
         cuda_graph: bool = False, check_finite: bool = True) -> ParnetRunner:
    """Open an export directory (``parnet-export``) or an engine directory (``parnet-build``).

    Every file's size and sha256 are checked against the directory's manifest; engines are
    also checked against this machine (backend version, GPU compute capability / CPU model).

    backend: ``onnxruntime`` (default for exports), ``openvino``, ``torch`` (exports with deploy
    weights; CPU or CUDA) or ``tensorrt``; engine directories name their own. mode: ``whole`` (one
    session on the whole graph), ``streams`` (one session per subgraph, independent ones
    concurrently when the cores allow) or ``distributed`` (one process per device, torch.distributed).
    threads: in all (default: all cores). device: ``cpu`` (default) or ``cuda[:N]`` for exports.
    precision: exports only, ``bf16`` asks OpenVINO for bf16 inference on an fp32 export, ``fp16``/``bf16`` the torch
    backend (default: the export's own). timeout_s: distributed only, how long a call waits for
    a rank before raising. cuda_graph: whole/streams on one GPU (torch, tensorrt): capture the
    call into a CUDA graph once and replay it. check_finite: refuse an input holding NaN or inf
    (default; one pass over the input, see benchmarks/finite_check.py for its cost).
    """
    directory = Path(path)
    if is_engine_dir(directory):
        if precision is not None:
            raise UserError(f"{directory} holds engines built for one precision; --precision (precision=) applies to "
                            f"exports")
        return open_engines(directory, backend=backend, mode=mode, threads=threads, timeout_s=timeout_s,
                            cuda_graph=cuda_graph, check_finite=check_finite)
    name = backend or "onnxruntime"
    if not backend_class(name).runs_onnx:
        raise UserError(f"{directory} is an export (ONNX); {name} runs engines: "
                        f"parnet-build {directory} --backend {name}, then load engines/<name>")
    manifest = load_manifest(directory).for_backend(name)
    lower = ("fp16", "bf16") if name == "torch" else ("bf16",)  # computed from the fp32 weights
    if precision is not None and precision != manifest.precision and not (precision in lower
                                                                          and manifest.precision == "fp32"):
        raise UserError(f"{directory} holds {manifest.precision}; precision {precision!r} applies to fp32 exports only "
                        f"({', '.join(lower)} with {name}) or must match")
    return ParnetRunner(manifest, directory, backend=name, mode=mode, threads=threads, device=device,
                        precision=precision, timeout_s=timeout_s, cuda_graph=cuda_graph, check_finite=check_finite)
