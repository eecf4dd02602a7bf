"""ONNX Runtime sessions tuned for batch-1 latency, and the runner over one session.

Sequential execution mode (ORT_PARALLEL measured 2.2x slower on 2 cores), full graph
optimization, and no spin-waiting of the intra-op threads: several sessions that spin on
2 cores starve each other (measured 3x slower).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...artifacts.export_manifest import SubgraphSpec, TensorSpec
from ...errors import BackendMissingError, RuntimeFailure, UserError
from ..base import Runner, reported
from . import INFO
from .qdq import to_int8, to_uint8


def ort():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - a core dependency
        raise INFO.missing() from e
    return onnxruntime


def providers_for(device: str) -> list:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        if device[4:5] not in ("", ":") or not index.isdigit():
            raise UserError(f"unknown device {device!r}; use cpu or cuda[:N]")
        if "CUDAExecutionProvider" not in ort().get_available_providers():
            raise BackendMissingError("onnxruntime CUDA execution provider", "pip install onnxruntime-gpu")
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    raise UserError(f"unknown device {device!r}; use cpu or cuda[:N]")


def session_options(threads: int, optimized_path: Path | None = None):
    so = ort().SessionOptions()
    so.execution_mode = ort().ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort().GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


def model_bytes(path: Path) -> bytes:
    """The graph ORT should run: a symmetric int8 Q/DQ graph gets uint8 activations (same values).

    ORT's x86 int8 kernels are u8s8; on the s8s8 graph it ran 1.9x slower than fp32.
    """
    data = path.read_bytes()
    if b"QuantizeLinear" not in data:
        return data
    import onnx

    from .qdq import u8_rewrite

    rewritten = u8_rewrite(onnx.load_from_string(data))
    return data if rewritten is None else rewritten.SerializeToString()


def create_session(path: Path, threads: int, providers: list, optimized_path: Path | None = None):
    try:
        return ort().InferenceSession(model_bytes(path), session_options(threads, optimized_path),
                                      providers=providers)
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        raise UserError(f"onnxruntime cannot load {path.name}: {str(e).splitlines()[0]}") from e


NUMPY_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool"}


def engine_io(session, spec: SubgraphSpec) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], set[str]]:
    """The session's own inputs and outputs, as the manifest writes them (checked by :class:`Runner`), and the
    int8 cuts it takes or gives as uint8 (`qdq.to_u8_activations`: the same values, shifted by 128)."""
    declared = {t.name: t for t in (*spec.inputs, *spec.outputs)}
    wanted = {t.name: t.dtype for t in declared.values()}
    shifted: set[str] = set()

    def specs(args) -> tuple[TensorSpec, ...]:
        out = []
        for a in args:
            dtype = NUMPY_TYPES.get(a.type, a.type)
            if dtype == "uint8" and wanted.get(a.name) == "int8":
                dtype = "int8"
                shifted.add(a.name)
            out.append(reported(a.name, tuple(a.shape), dtype, declared.get(a.name)))
        return tuple(out)

    return specs(session.get_inputs()), specs(session.get_outputs()), shifted


class OnnxRuntimeRunner(Runner):
    """ORT sessions are thread-safe; every call keeps its own tensors."""

    def __init__(self, session, spec: SubgraphSpec):
        inputs, outputs, self._shifted = engine_io(session, spec)
        super().__init__(spec, inputs, outputs)
        self.session = session
        self._outputs = [t.name for t in spec.outputs]

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._shifted:
            feeds = {n: to_uint8(v) if n in self._shifted else v for n, v in feeds.items()}
        try:
            outs = dict(zip(self._outputs, self.session.run(self._outputs, feeds)))
        except Exception as e:
            raise RuntimeFailure(f"onnxruntime failed running {self.spec.name}: {str(e).splitlines()[0]}") from e
        return {n: to_int8(v) if n in self._shifted else v for n, v in outs.items()} if self._shifted else outs

    def close_impl(self) -> None:
        self.session = None
