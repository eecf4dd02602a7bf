from ._registry import create_model, list_models, model_config
from .parnet import ParNet, ParNetConfig

__all__ = ["ParNet", "ParNetConfig", "create_model", "list_models", "model_config"]
