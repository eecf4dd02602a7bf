"""``quantize_export``: an fp32 export → ``export/<name>-int8/``, calibrated once, a Q/DQ graph flavor per engine.

The flavors are `placement.FLAVORS`: the first one's files are the export's own (``model.onnx``,
``stem.onnx``, ...), the others' are named ``<file>.<flavor>.onnx`` and listed, with their subgraph
specs, in ``quantization.flavors``; ``ExportManifest.for_backend`` picks. Each whole graph is
calibrated once and its subgraphs are cut from it, so every subgraph uses the same scales. Every
flavor passes the accuracy gate before anything is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..artifacts.dag import INPUT
from ..artifacts.export_manifest import ExportManifest, Int8Flavor, Quantization, SubgraphSpec, load_manifest
from ..artifacts.files import atomic_directory, check_target, hash_files
from ..artifacts.schema import NAME
from ..backends import get_backend
from ..errors import UserError
from .accuracy import Accuracy, drop_against_fp32, evaluate, outputs_of, relative_error
from .int8 import METHODS, Int8Config, quantize_until_accurate
from .placement import FLAVORS
from .rewrite import quantize_boundaries


@dataclass(frozen=True)
class QuantizeConfig:
    calib: str  # digits | file.npz | folder
    method: str = "minmax"
    # top-1 points (or % disagreement with fp32 on unlabeled images; for a model that is not an image
    # classifier, the outputs' relative L2 error vs fp32 in %)
    max_drop: float = 1.0
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


def _is_image_classifier(export: ExportManifest) -> bool:
    """One normalized image input and one (1, classes) output: judged by top-1 on image sources."""
    return (len(export.whole.inputs) == 1 and len(export.normalizations) == 1 and len(export.whole.outputs) == 1
            and len(export.output.shape) == 2)


def flavor_file(file: str, flavor: str) -> str:
    """model.onnx -> model.tensorrt.onnx"""
    stem, dot, ext = file.rpartition(".")
    return f"{stem}.{flavor}{dot}{ext}"


def _specs(export: ExportManifest, file: Callable[[str], str], quantized: dict[str, str]
           ) -> tuple[SubgraphSpec, tuple[SubgraphSpec, ...]]:
    """The export's whole and subgraph specs with their files renamed and the ``quantized`` cuts' dtypes."""
    def spec(s: SubgraphSpec) -> SubgraphSpec:
        def typed(ts):
            return tuple(replace(t, dtype=quantized[t.name]) if t.name in quantized else t for t in ts)
        return replace(s, file=file(s.file), inputs=typed(s.inputs), outputs=typed(s.outputs))

    return spec(export.whole), tuple(spec(s) for s in export.subgraphs)


def quantize_export(export_dir: str | Path, config: QuantizeConfig,
                    log: Callable[[str], None] = print) -> tuple[Path, ExportManifest]:
    import onnx

    from ..data import calibration_source, evaluation_source, load_feeds, load_source
    from ..data.batching import batch_bounds
    from ..export.graph import cut

    config.validate()
    export_dir = Path(export_dir)
    export = load_manifest(export_dir)
    if export.precision != "fp32":
        raise UserError(f"{export_dir} holds {export.precision}; quantize an fp32 export")
    target = config.output / (config.name or f"{export.name}-int8")
    check_target(target, config.force, "manifest.json", export_dir)  # before minutes of calibration
    classifier = _is_image_classifier(export)
    if classifier:
        norm = export.normalization
        calib = load_source(calibration_source(config.calib), tuple(export.resolution), norm.mean, norm.std)
        heldout = load_source(evaluation_source(config.calib, config.eval_source), tuple(export.resolution),
                              norm.mean, norm.std)
    else:  # any other model: its own inputs from an .npz, judged by how far its outputs move
        calib = load_feeds(config.calib, export.whole.inputs)
        heldout = load_feeds(config.eval_source or config.calib, export.whole.inputs)
    backend = get_backend("onnxruntime")
    names = tuple(t.name for t in export.whole.inputs)
    bounds = batch_bounds(export.whole.inputs[0])  # calibration and gates run as batched as the graph allows

    def accuracy_of(path: Path) -> Accuracy | list[dict]:
        runner = backend.load(path, export.whole)
        try:
            return evaluate(runner.infer_array, heldout, bounds) if classifier else outputs_of(
                runner.infer, heldout, names, bounds)
        finally:
            runner.close()

    fp32 = accuracy_of(export_dir / export.whole.file)
    measured: dict[str, dict] = {}

    def accept(path: Path) -> tuple[bool, str]:
        q = accuracy_of(path)
        if not classifier:
            err = relative_error(q, fp32)
            measured[path.name] = dict(top1_fp32=None, top1_int8=None, agreement=max(0.0, 1 - err),
                                       drop_points=100 * err)
            return 100 * err <= config.max_drop, f"outputs' relative error vs fp32 {err:.2%} (not a classifier)"
        agree = q.agreement(fp32)
        drop, summary = drop_against_fp32(fp32.top1, q, agree, heldout.labels is not None)
        measured[path.name] = dict(top1_fp32=fp32.top1 if heldout.labels is not None else None,
                                   top1_int8=q.top1 if heldout.labels is not None else None, agreement=agree,
                                   drop_points=drop)
        return drop <= config.max_drop, summary

    name = config.name or f"{export.name}-int8"
    target = config.output / name
    cfg = Int8Config(method=config.method, batch=bounds)
    log(f"quantizing {export.name} to int8 ({cfg.method} calibration on {calib.name}; accuracy on {heldout.name}, "
        f"max drop {config.max_drop} points)")
    with atomic_directory(target, force=config.force, source=export_dir) as tmp:
        own, others = FLAVORS[0], FLAVORS[1:]
        level, kept_float, _ = quantize_until_accurate(
            export_dir / export.whole.file, tmp / export.whole.file, calib, cfg, accept, log,
            flavors={f.name: tmp / flavor_file(export.whole.file, f.name) for f in others})
        if kept_float:
            log(f"  kept in float: {', '.join(kept_float)}")
        cuts = [e.tensor for e in export.dag.edges if e.producer != INPUT]
        records = []
        for flavor in FLAVORS:
            rename = (lambda f: f) if flavor is own else (lambda f, n=flavor.name: flavor_file(f, n))
            whole = onnx.load(tmp / rename(export.whole.file))
            crossed: dict[str, str] = {}
            if flavor.quantized_cuts:
                whole, crossed = quantize_boundaries(whole, cuts)
                onnx.save(whole, tmp / rename(export.whole.file))
                log(f"  {flavor.name}: quantized cuts between subgraphs: "
                    + (", ".join(f"{n} ({d})" for n, d in crossed.items()) or "none"))
            for spec in export.subgraphs:
                onnx.save(cut(whole, [t.name for t in spec.inputs], [t.name for t in spec.outputs], spec.name),
                          tmp / rename(spec.file))
            records.append(Int8Flavor(flavor.name, flavor.backends, flavor.placement,
                                      *_specs(export, rename, crossed)))
        shutil.copyfile(export_dir / export.reference, tmp / export.reference)
        gate = measured[export.whole.file]
        record = Quantization(method=cfg.method, calibration=calib.name, evaluation=heldout.name, level=level.name,
                              kept_float=tuple(kept_float), max_drop=config.max_drop, source=export.name,
                              source_sha256=export.files[export.whole.file].sha256, **gate, flavor=own.name,
                              flavors=tuple(records[1:]))
        manifest = replace(export, name=name, precision="int8", whole=records[0].whole,
                           subgraphs=records[0].subgraphs, files=hash_files(tmp), quantization=record,
                           torch_weights=None,  # the torch backend runs float exports only
                           verification={"performed": True, "accuracy_gate": "passed",
                                         "flavor_gates": {f.name: measured[flavor_file(export.whole.file, f.name)]
                                                          for f in others}})
        manifest.write(tmp)
    log(f"int8 export written to {target}/")
    return target, manifest
