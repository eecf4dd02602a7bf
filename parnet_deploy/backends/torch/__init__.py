"""PyTorch backend: the deploy-form model itself, sliced at the export's cut points (CPU or CUDA)."""

from ..info import BackendInfo

INFO = BackendInfo(name="torch", cls="TorchBackend", install_hint="pip install 'parnet-deploy[export]'",
                   precisions=("fp32", "fp16", "bf16"), device_kinds=("cpu", "cuda"), builds_engines=False)
