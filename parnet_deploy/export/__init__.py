"""Export: deploy form → ``export/<name>/`` (whole ONNX, one ONNX per stream, manifest); any ONNX
model or ``torch.nn.Module`` → the same, split where the partitioner predicts it pays.

Only the manifest is imported eagerly; the exporter (PyTorch) is imported on use.
"""

from ..artifacts.export_manifest import ExportManifest, SubgraphSpec, TensorSpec, load_manifest


def __getattr__(name: str):
    if name in ("ExportConfig", "export_model", "export_checkpoint"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("OnnxExportConfig", "export_onnx", "export_module"):
        from . import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(name)


__all__ = ["ExportConfig", "ExportManifest", "OnnxExportConfig", "SubgraphSpec", "TensorSpec", "export_checkpoint",
           "export_model", "export_module", "export_onnx", "load_manifest"]
