"""``evaluate_stages``: top-1 / top-5 of every deployment stage on a labeled set, batch 1 as deployed."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends import available_backends
from ..errors import UserError
from ..hardware import native_bf16
from ..models import ParNet
from ..precision.accuracy import Accuracy, evaluate
from ..runtime import load

REFERENCE = "onnxruntime fp32 whole"


@dataclass(frozen=True)
class StagesAccuracy:
    data: str
    images: int
    stages: dict[str, Accuracy]

    def table(self) -> str:
        ref = self.stages[REFERENCE]
        lines = [f"accuracy on {self.data} ({self.images} images, batch 1)",
                 f"  {'stage':<36}{'top-1':>9}{'top-5':>9}{'agreement with fp32':>22}"]
        for name, acc in self.stages.items():
            lines.append(f"  {name:<36}{acc.top1:>9.2%}{acc.top5:>9.2%}{acc.agreement(ref):>22.2%}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        ref = self.stages[REFERENCE]
        return {"data": self.data, "images": self.images, "accuracy": {
            name: {"top1": a.top1, "top5": a.top5, "agreement_with_fp32": a.agreement(ref)}
            for name, a in self.stages.items()}}


def evaluate_stages(model: ParNet, data_source: str, calib: str | None = None, calib_method: str = "minmax",
                    log: Callable[[str], None] = lambda _: None) -> StagesAccuracy:
    """Torch train and deploy forms, then every runtime stage that applies here: ONNX Runtime fp32
    (whole, streams) and fp16; OpenVINO fp32 and, on native-bf16 CPUs, bf16; int8 (Q/DQ, each backend its
    flavor, calibrated on ``calib``) on every CPU backend."""
    import torch

    from ..data import load_source
    from ..export.pipeline import ExportConfig, export_model
    from ..precision.quantize import QuantizeConfig, quantize_export
    from ..reparam import reparameterize

    res = (model.config.default_resolution,) * 2
    data = load_source("digits:heldout" if data_source == "digits" else data_source, res)
    if data.labels is None:
        raise UserError(f"{data_source}: accuracy needs labels")

    def torch_run(m: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return m(torch.from_numpy(x)).numpy()
        return run

    stages: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "torch train form": torch_run(model.eval()), "torch deploy form": torch_run(reparameterize(model))}
    with tempfile.TemporaryDirectory(prefix="parnet-eval-") as tmp:
        quiet = lambda _: None  # noqa: E731
        d32, _ = export_model(model, ExportConfig(output=Path(tmp), name="fp32", resolution=res, split="shared",
                                                  verify=False), log=quiet)
        d16, _ = export_model(model, ExportConfig(output=Path(tmp), name="fp16", resolution=res, precision="fp16",
                                                  verify=False), log=quiet)
        runners = {REFERENCE: load(d32), "onnxruntime fp32 streams": load(d32, mode="streams"),
                   "onnxruntime fp16 whole": load(d16)}
        cpu_backends = available_backends("cpu")
        if "openvino" in cpu_backends:
            runners["openvino fp32 whole"] = load(d32, backend="openvino")
            if native_bf16():
                runners["openvino bf16 whole"] = load(d32, backend="openvino", precision="bf16")
        if calib:
            d8, _ = quantize_export(d32, QuantizeConfig(calib=calib, method=calib_method, max_drop=100.0,
                                                        eval_source=data_source, output=Path(tmp)), log=quiet)
            for name in cpu_backends:
                runners[f"{name} int8 (Q/DQ) whole"] = load(d8, backend=name)
        stages |= runners
        try:
            results = {}
            for name, run in stages.items():
                log(f"  {name} ...")
                results[name] = evaluate(run, data)
        finally:
            for r in runners.values():
                r.close()
    return StagesAccuracy(data.name, len(data), results)
