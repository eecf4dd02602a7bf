"""``quantize_export``: an fp32 export → ``export/<name>-int8/``, one calibrated Q/DQ graph for every runtime.

Symmetric int8 (zero points 0), biases in float, Q/DQ on the inputs of weighted ops: what
TensorRT's explicit quantization and OpenVINO take as is. ONNX Runtime on x86 runs the same
values with uint8 activations (its backend converts, exactly). The whole graph is calibrated
once and the subgraphs are cut from it, so every subgraph uses the same scales. The accuracy
gate runs before anything is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..artifacts.export_manifest import ExportManifest, Quantization, load_manifest
from ..artifacts.files import atomic_directory, check_target, hash_files
from ..artifacts.schema import NAME
from ..backends import get_backend
from ..errors import UserError
from .accuracy import Accuracy, drop_against_fp32, evaluate
from .int8 import METHODS, Int8Config, quantize_until_accurate


@dataclass(frozen=True)
class QuantizeConfig:
    calib: str  # digits | file.npz | folder
    method: str = "minmax"
    max_drop: float = 1.0  # top-1 points (or % disagreement with fp32 on unlabeled data)
    eval_source: str | None = None  # default: digits -> digits:heldout, otherwise the calib source
    output: Path = Path("export")
    name: str | None = None  # default: <export name>-int8
    force: bool = False

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (0 <= self.max_drop <= 100):
            raise UserError(f"--max-drop must be between 0 and 100 points, got {self.max_drop}")
        if self.name is not None and not (NAME.fullmatch(self.name) and ".." not in self.name):
            raise UserError(f"bad name {self.name!r}: use letters, digits, '.', '_', '-' (at most 64, starting with "
                            f"a letter or digit)")


def quantize_export(export_dir: str | Path, config: QuantizeConfig,
                    log: Callable[[str], None] = print) -> tuple[Path, ExportManifest]:
    import onnx

    from ..data import calibration_source, evaluation_source, load_source
    from ..export.graph import cut, subgraph_plan

    config.validate()
    export_dir = Path(export_dir)
    export = load_manifest(export_dir)
    if export.precision != "fp32":
        raise UserError(f"{export_dir} holds {export.precision}; quantize an fp32 export")
    target = config.output / (config.name or f"{export.name}-int8")
    check_target(target, config.force, "manifest.json", export_dir)  # before minutes of calibration
    norm = export.normalization
    calib = load_source(calibration_source(config.calib), tuple(export.resolution), norm.mean, norm.std)
    heldout = load_source(evaluation_source(config.calib, config.eval_source), tuple(export.resolution), norm.mean,
                          norm.std)
    backend = get_backend("onnxruntime")

    def accuracy_of(path: Path) -> Accuracy:
        runner = backend.load(path, export.whole)
        try:
            return evaluate(runner.infer_array, heldout)
        finally:
            runner.close()

    fp32 = accuracy_of(export_dir / export.whole.file)
    measured: dict = {}

    def accept(path: Path) -> tuple[bool, str]:
        q = accuracy_of(path)
        agree = q.agreement(fp32)
        drop, summary = drop_against_fp32(fp32.top1, q, agree, heldout.labels is not None)
        measured.update(top1_fp32=fp32.top1 if heldout.labels is not None else None,
                        top1_int8=q.top1 if heldout.labels is not None else None, agreement=agree, drop_points=drop)
        return drop <= config.max_drop, summary

    name = config.name or f"{export.name}-int8"
    target = config.output / name
    cfg = Int8Config(method=config.method)
    log(f"quantizing {export.name} to int8 ({cfg.method} calibration on {calib.name}; accuracy on {heldout.name}, "
        f"max drop {config.max_drop} points)")
    with atomic_directory(target, force=config.force, source=export_dir) as tmp:
        level, kept_float, _ = quantize_until_accurate(export_dir / export.whole.file, tmp / export.whole.file,
                                                       calib, cfg, accept, log)
        whole = onnx.load(tmp / export.whole.file)
        for sub, ins, outs, _ in subgraph_plan(export.split):
            onnx.save(cut(whole, ins, outs, sub), tmp / f"{sub}.onnx")
        shutil.copyfile(export_dir / export.reference, tmp / export.reference)
        if kept_float:
            log(f"  kept in float: {', '.join(kept_float)}")
        record = Quantization(method=cfg.method, calibration=calib.name, evaluation=heldout.name, level=level.name,
                              kept_float=tuple(kept_float), max_drop=config.max_drop, source=export.name,
                              source_sha256=export.files[export.whole.file].sha256, **measured)
        manifest = replace(export, name=name, precision="int8", files=hash_files(tmp), quantization=record,
                           torch_weights=None,  # the torch backend runs float exports only
                           verification={"performed": True, "accuracy_gate": "passed"})
        manifest.write(tmp)
    log(f"int8 export written to {target}/")
    return target, manifest
