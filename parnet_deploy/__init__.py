"""parnet-deploy: ParNet checkpoints to the fastest batch-1 inference."""

from .errors import ParnetError
from .models import ParNet, ParNetConfig, create_model, list_models
from .reparam import count_params, depth, flops, official_fuse, reparameterize

__version__ = "0.1.0"

__all__ = [
    "ParNet", "ParNetConfig", "ParnetError", "count_params", "create_model", "depth", "flops",
    "list_models", "load_checkpoint", "official_fuse", "reparameterize", "save_checkpoint",
]


def __getattr__(name: str):
    # checkpoint I/O pulls in safetensors; keep `import parnet_deploy` light
    if name in ("load_checkpoint", "save_checkpoint"):
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(name)
