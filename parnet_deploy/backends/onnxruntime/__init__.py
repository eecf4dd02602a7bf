"""ONNX Runtime backend: CPU execution provider by default, CUDA when onnxruntime-gpu is installed."""

from ..info import BackendInfo

INFO = BackendInfo(name="onnxruntime", cls="OnnxRuntimeBackend",
                   install_hint="pip install onnxruntime (or onnxruntime-gpu)",
                   precisions=("fp32", "fp16", "int8"), engine_suffix=".ort.onnx")
