"""OpenVINO backend (optional: ``pip install openvino``); imports without it."""

from ..info import BackendInfo

# fp16 exports keep their fp16 rounding (f32 hint)
INFO = BackendInfo(name="openvino", cls="OpenVinoBackend", install_hint="pip install openvino",
                   precisions=("fp32", "fp16", "bf16", "int8"), engine_suffix=".blob")
