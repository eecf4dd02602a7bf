"""TensorRT backend: per-GPU plans, CUDA streams, torch.cuda for memory. Needs an NVIDIA GPU.

Written against the documented TensorRT 10/11 and torch.cuda APIs; it has never run on this
project's machines (no GPU, TensorRT not installable): its tests are marked ``gpu``.
"""

from ..info import BackendInfo

INFO = BackendInfo(name="tensorrt", cls="TensorRTBackend",
                   install_hint="pip install 'parnet-deploy[gpu]' (tensorrt>=10 and a CUDA build of torch; needs an "
                                "NVIDIA GPU)",
                   precisions=("fp32", "fp16", "int8"), device_kinds=("cuda",), engine_suffix=".plan", runs_onnx=False)
