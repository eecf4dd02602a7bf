"""Accuracy gate of a reduced-precision engine (bf16, int8) against fp32, on the backend that runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..artifacts.build_records import AccuracyGate
from ..artifacts.export_manifest import ExportManifest, SubgraphSpec
from ..backends import get_backend
from ..errors import VerificationError


def gate_accuracy(export_dir: Path, export: ExportManifest, backend: str, engine: Path, spec: SubgraphSpec,
                  precision: str, source: str, max_drop: float, log: Callable[[str], None]) -> AccuracyGate:
    """Top-1 of the built whole-graph engine vs fp32; raises VerificationError beyond ``max_drop``."""
    from ..data import load_source
    from ..data.batching import batch_bounds
    from ..precision.accuracy import drop_against_fp32, evaluate

    norm = export.normalization
    data = load_source(source, tuple(export.resolution), norm.mean, norm.std)
    with get_backend(backend, threads=None, precision=precision).load(engine, spec) as runner:
        reduced = evaluate(runner.infer_array, data, batch_bounds(spec.inputs[0]))
    if export.precision == "fp32":
        with get_backend("onnxruntime").load(export_dir / export.whole.file, export.whole) as ref_runner:
            fp32 = evaluate(ref_runner.infer_array, data, batch_bounds(export.whole.inputs[0]))
        top1_fp32, agreement, reference = fp32.top1, reduced.agreement(fp32), "onnxruntime fp32 whole graph"
    else:  # an int8 export: the fp32 accuracy its quantization recorded on the same set
        q = export.quantization
        if q is None or q.evaluation != data.name or q.top1_fp32 is None:
            log(f"  accuracy gate skipped: {export.name} records no fp32 top-1 on {data.name}")
            return AccuracyGate(data.name, len(data), None, reduced.top1, None, 0.0, max_drop, "none")
        top1_fp32, agreement, reference = q.top1_fp32, None, f"fp32 top-1 recorded by parnet-quantize ({q.source})"
    drop, summary = drop_against_fp32(top1_fp32, reduced, agreement, data.labels is not None)
    log(f"  accuracy gate ({backend} {precision}, {data.name}, {len(data)} images): {summary}, max {max_drop}")
    if drop > max_drop:
        raise VerificationError(f"{backend} {precision} loses {drop:.2f} points on {data.name} (max {max_drop}); "
                                f"nothing was written")
    return AccuracyGate(data.name, len(data), top1_fp32, reduced.top1, agreement, drop, max_drop, reference)
