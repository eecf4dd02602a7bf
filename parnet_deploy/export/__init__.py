"""Export: deploy form → ``export/<name>/`` (whole ONNX, one ONNX per stream, manifest).

Only the manifest is imported eagerly; the exporter (PyTorch) is imported on use.
"""

from ..artifacts.export_manifest import ExportManifest, SubgraphSpec, TensorSpec, load_manifest


def __getattr__(name: str):
    if name in ("ExportConfig", "export_model", "export_checkpoint"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)


__all__ = ["ExportConfig", "ExportManifest", "SubgraphSpec", "TensorSpec", "export_checkpoint", "export_model",
           "load_manifest"]
