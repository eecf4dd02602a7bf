"""Built-in verification of an export: ONNX Runtime vs PyTorch, composed subgraphs vs whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ..artifacts.export_manifest import ExportManifest
from ..compare import Comparison, compare
from ..models import ParNet

# fp32: the deploy form is exact, ORT differs by summation order only.
FP32_RTOL = 1e-4
# fp16 inside (10-bit mantissa): measured 3e-4 .. 1e-3 on ParNet logits; 1e-2 leaves margin
# without hiding a broken graph (a wrong op shows errors of order 1).
FP16_RTOL = 1e-2
# a row of a batch vs the same image alone: only the batch-dependent kernel choice differs
ROWS_RTOL = 1e-5


@dataclass(frozen=True)
class VerificationResult:
    comparisons: tuple[Comparison, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    def report(self) -> str:
        return "\n".join(c.report() for c in self.comparisons)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "comparisons": [c.to_dict() for c in self.comparisons]}


def random_inputs(shape: tuple[int, ...], count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def _torch_logits(model: ParNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


class _OrtGraphs:
    """The written files run by ONNX Runtime directly: the whole graph, and the subgraphs composed
    in DAG order (export sits below the runtime; it checks its output with ORT as a tool)."""

    def __init__(self, manifest: ExportManifest, directory: Path):
        import onnxruntime as ort

        def session(file: str):
            return ort.InferenceSession(str(directory / file), providers=["CPUExecutionProvider"])

        self.manifest = manifest
        self.whole = session(manifest.whole.file)
        self.parts = {s.name: session(s.file) for s in manifest.subgraphs}

    def run_whole(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = self.manifest.output.name
        return {name: self.whole.run([name], feeds)[0]}

    def run_composed(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = dict(feeds)
        for s in self.manifest.subgraphs:  # an execution order
            outs = [t.name for t in s.outputs]
            values.update(zip(outs, self.parts[s.name].run(outs, {t.name: values[t.name] for t in s.inputs})))
        return {self.manifest.output.name: values[self.manifest.output.name]}


def _batches(manifest: ExportManifest) -> list[int]:
    """The batches an export is checked at: its bounds (a static export: its one batch)."""
    dim = manifest.batch
    return [manifest.input.shape[0]] if dim is None else sorted({dim.min, dim.max})


def verify_export(manifest: ExportManifest, directory: Path, train: ParNet, deploy: ParNet,
                  fp32_whole: onnx.ModelProto | None, samples: int = 2, seed: int = 0) -> VerificationResult:
    """Run the written files with ONNX Runtime and compare, per sample, with the references.

    fp32 exports are compared with the PyTorch train and deploy forms (rtol 1e-4); fp16
    exports with the fp32 ONNX graph run by ONNX Runtime (rtol 1e-2). The composed
    subgraphs are always compared with the whole graph of the same precision. Each check runs
    at the smallest and the largest batch; past batch 1, a batch of distinct images must give,
    row by row, what each image gives alone (rtol 1e-5).
    """
    graphs = _OrtGraphs(manifest, directory)
    fp32_runner = None
    if manifest.precision != "fp32":
        import onnxruntime as ort

        fp32_runner = ort.InferenceSession(fp32_whole.SerializeToString(), providers=["CPUExecutionProvider"])
    name, image = manifest.output.name, manifest.input.name
    comparisons = []
    for batch in _batches(manifest):
        for i, x in enumerate(random_inputs(manifest.input.shape_at(batch), samples, seed + batch)):
            got_whole = graphs.run_whole({image: x})
            got_streams = graphs.run_composed({image: x})
            tag = f"[batch {batch} sample {i}]"
            if fp32_runner is None:
                train_ref = {name: _torch_logits(train, x)}
                comparisons += [
                    compare(f"{tag} onnxruntime whole vs torch train form", got_whole, train_ref, FP32_RTOL),
                    compare(f"{tag} onnxruntime whole vs torch deploy form", got_whole,
                            {name: _torch_logits(deploy, x)}, FP32_RTOL),
                    compare(f"{tag} onnxruntime {manifest.split} subgraphs vs torch train form", got_streams,
                            train_ref, FP32_RTOL),
                ]
            else:
                fp32_ref = {name: fp32_runner.run([name], {image: x})[0]}
                comparisons.append(compare(f"{tag} {manifest.precision} whole vs fp32 whole", got_whole, fp32_ref,
                                           FP16_RTOL))
            comparisons.append(compare(f"{tag} {manifest.split} subgraphs vs whole", got_streams, got_whole,
                                       FP32_RTOL if fp32_runner is None else FP16_RTOL))
        if batch > 1:
            comparisons.append(_rows_vs_alone(manifest, graphs, deploy, batch, seed))
    return VerificationResult(tuple(comparisons))


def _rows_vs_alone(manifest: ExportManifest, graphs: _OrtGraphs, deploy: ParNet, batch: int, seed: int) -> Comparison:
    """A batch of distinct images vs each image alone: the same graph at batch 1 where the bounds
    allow it, else (a static batch) the PyTorch deploy form one image at a time."""
    name, image = manifest.output.name, manifest.input.name
    x = random_inputs(manifest.input.shape_at(batch), 1, seed + 1000 + batch)[0]
    got = graphs.run_whole({image: x})
    same_graph = manifest.batch is not None and 1 in manifest.batch
    if same_graph:
        alone = [graphs.run_whole({image: x[k:k + 1]})[name] for k in range(batch)]
        what = "the same graph at batch 1"
    else:
        alone = [_torch_logits(deploy, x[k:k + 1]) for k in range(batch)]
        what = "the torch deploy form one image at a time"
    # against torch, an fp16 graph differs by its own rounding, not by the batch
    rtol = ROWS_RTOL if same_graph or manifest.precision == "fp32" else FP16_RTOL
    return compare(f"[batch {batch}] rows of distinct images vs {what}", got,
                   {name: np.concatenate(alone)}, rtol)
