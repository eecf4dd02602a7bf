"""``export_onnx``: a user's ``MODEL.onnx`` → a verified export directory, split where a cost model says it pays.

The same directory layout as a ParNet export (``model.onnx``, one ONNX per subgraph,
``manifest.json`` with every file hashed, ``reference.npz``), so every engine, executor and the
C library run it unchanged. What differs is where the cuts come from: the partitioner
(``parnet_deploy.partition``) finds the branches and predicts whether running them apart pays on
``devices`` devices; the manifest records that decision under ``partition``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from ..artifacts.export_manifest import ExportManifest, Normalization, SubgraphSpec, check_normalizations
from ..artifacts.files import atomic_directory, hash_files
from ..artifacts.model_record import OnnxModelRecord, PartitionedSubgraph, PartitionRecord
from ..artifacts.schema import NAME
from ..compare import compare
from ..data.random_feeds import random_feeds
from ..errors import ConfigError, VerificationError
from ..partition import CostModel, Partition, compose, cut_model, find_partition, why_table
from ..partition.search import MAX_SUBGRAPHS
from .onnx_batch import with_dynamic_batch
from .onnx_source import OnnxSource, load_onnx_source
from .opgate import TENSORRT_MAX_OPSET, TENSORRT_SOURCE, unsupported_ops
from .pipeline import Steps, check_batch_bounds, check_export_name, spec_of, tool_versions

SPLITS = ("auto", "none")
MAX_DEVICES = MAX_SUBGRAPHS
RTOL = 1e-5  # split vs whole, both fp32 on ONNX Runtime: only the summation order may differ


@dataclass(frozen=True)
class OnnxExportConfig:
    """What ``parnet-export MODEL.onnx`` writes and how.

    input_shapes: name → dims fixing dynamic inputs; split: ``auto`` (the partitioner decides)
    or ``none``; devices: what the prediction plans for (streams of one CPU count as one device);
    cost: the cost model (None: measured on this machine, a few seconds); normalizations: how
    the caller prepares image inputs, if any declare one.
    """

    output: Path = Path("export")
    name: str | None = None
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    split: str = "auto"
    devices: int = 1
    force: bool = False
    verify: bool = True
    seed: int = 0
    threads: int = 1
    cost: CostModel | None = None
    normalizations: tuple[Normalization, ...] = ()
    batch: tuple[int, int] | None = None  # (min, max): dim 0 of every input; None: as the model and input_shapes say

    def validate(self) -> None:
        if self.batch is not None:
            check_batch_bounds(self.batch)
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r} for an ONNX model; choose one of {', '.join(SPLITS)}")
        if not 1 <= self.devices <= MAX_DEVICES:
            raise ConfigError(f"--devices must be in 1..{MAX_DEVICES}, got {self.devices}")
        check_export_name(self.name)


def default_name(path: Path) -> str:
    """The file's stem made a valid export name (``my model.onnx`` → ``my_model``)."""
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(path).stem)[:64].strip("._-")
    return stem if stem and NAME.fullmatch(stem) and ".." not in stem else "model"


def export_onnx(path: str | Path, config: OnnxExportConfig = OnnxExportConfig(),
                log: Callable[[str], None] = print) -> tuple[Path, ExportManifest]:
    """Check, partition, cut, verify and write; returns the directory and its manifest.

    Raises :class:`VerificationError` (nothing is written) when the split does not reproduce the whole."""
    config.validate()
    path = Path(path)
    target = config.output / (config.name or default_name(path))
    step = Steps(5 if config.verify else 4, log)
    with step(f"load and check {path.name} (size, external data, onnx.checker, shapes)"):
        source = load_onnx_source(path, config.input_shapes, None if config.batch is None else config.batch[0])
    check_normalizations(config.normalizations, source.inputs, "normalization")
    tensorrt = _tensorrt_gate(source)
    if tensorrt != "passed":
        log(f"note: {tensorrt}; ONNX Runtime and OpenVINO run it, parnet-build --backend tensorrt would refuse it")
    partition = None
    if config.split == "auto":
        with step("partition (cost model" + (" measured on this machine)" if config.cost is None else ")")):
            cost = config.cost
            if cost is None:
                from ..partition import measure_cost_model

                cost = measure_cost_model(threads=config.threads)
            partition = find_partition(source.model, cost, config.devices)
        log(why_table(partition))
    else:
        step.n += 1
        log(f"[{step.n}/{step.total}] partition ... skipped (--split none)")
    split = partition is not None and partition.is_split
    lo, hi = config.batch or (None, None)
    dynamic = lo is not None and lo < hi
    with atomic_directory(target, force=config.force, marker="manifest.json", source=path) as tmp:
        with step(f"cut {len(partition.subgraphs) if split else 1} subgraph(s) (onnx-graphsurgeon, onnx.checker)"
                  + (f", batch {lo}..{hi}" if dynamic else "")):
            whole = source.model  # its shapes fixed and inferred: engines need no inference of their own
            pieces = cut_model(source.model, partition) if split else {}
            if dynamic:  # cut at the smallest batch, then each graph's dim 0 made the bounded batch again
                whole = with_dynamic_batch(whole, "model.onnx")
                pieces = {name: with_dynamic_batch(p, f"{name}.onnx") for name, p in pieces.items()}
        batch = config.batch if dynamic else (1, 1)
        io = spec_of(whole, "model", "model.onnx", batch=batch)
        with step("write files and reference inputs/outputs"):
            onnx.save(whole, tmp / "model.onnx")
            for name, piece in pieces.items():
                onnx.save(piece, tmp / f"{name}.onnx")
            feeds = random_feeds(io.inputs, config.seed)
            reference = compose({"model": whole}, feeds, [t.name for t in io.outputs])
            np.savez(tmp / "reference.npz", **{f"input{i}": feeds[t.name] for i, t in enumerate(io.inputs)},
                     **{f"output{i}": reference[t.name] for i, t in enumerate(io.outputs)})
        subgraphs = (tuple(spec_of(pieces[s.name], s.name, f"{s.name}.onnx", s.stream, batch)
                           for s in partition.subgraphs)
                     if split else (SubgraphSpec("whole", "model.onnx", io.inputs, io.outputs),))
        manifest = ExportManifest(
            name=target.name, model=OnnxModelRecord(source.sha256, source.opset, io.inputs, io.outputs),
            precision="fp32", split="auto" if split else "none", opset=source.opset,
            whole=io, subgraphs=subgraphs,
            files=hash_files(tmp), normalizations=config.normalizations, versions=tool_versions(),
            partition=None if partition is None else _record(partition), verification={"performed": False})
        if config.verify:
            with step("verify: subgraphs composed vs the whole graph (ONNX Runtime)"
                      + (f" at batch {lo} and {hi}, rows vs batch 1" if dynamic else "")):
                worst = _verify(pieces, feeds, reference, io) if split else 0.0
                if dynamic:
                    worst = max(worst, _verify_batches(whole, pieces, io, (lo, hi), config.seed))
            log(f"verification passed: worst relative error {worst:.2e} (limit {RTOL:g}, "
                f"{'split' if split else 'unsplit'} vs whole)")
            manifest = replace(manifest, verification={"performed": True, "passed": True, "comparisons": 1,
                                                       "worst_max_rel": worst, "tensorrt_op_gate": tensorrt})
        ExportManifest.parse(manifest.to_dict(), "manifest")  # what readers will parse, checked before it lands
        manifest.write(tmp)
    log(f"export written to {target}/ ({', '.join(sorted(manifest.files))}, manifest.json)")
    return target, manifest


def _tensorrt_gate(source: OnnxSource) -> str:
    """``passed``, or what TensorRT 10's ONNX parser would refuse (a user's model may hold any op; the
    export is not refused for it, as ParNet's is, since the CPU engines run every op)."""
    bad = unsupported_ops(source.model)
    problems = ([f"ops {', '.join(bad)} are not in {TENSORRT_SOURCE}"] if bad else []) + (
        [f"opset {source.opset} is above TensorRT's {TENSORRT_MAX_OPSET}"] if source.opset > TENSORRT_MAX_OPSET else [])
    return "; ".join(problems) or "passed"


def _run(pieces: dict[str, onnx.ModelProto], feeds: dict[str, np.ndarray], names: list[str],
         what: str) -> dict[str, np.ndarray]:
    """:func:`compose`, its failure (ONNX Runtime's own errors: a shape a graph cannot take) a
    VerificationError."""
    try:
        return compose(pieces, feeds, names)
    except Exception as e:
        raise VerificationError(f"{what}: ONNX Runtime fails: {str(e).splitlines()[0][:300]}; nothing was "
                                "written") from e


def _verify(pieces: dict[str, onnx.ModelProto], feeds: dict[str, np.ndarray], reference: dict[str, np.ndarray],
            io: SubgraphSpec, what: str = "split vs whole") -> float:
    """The pieces run one after another (ONNX Runtime) against the whole graph's outputs: floats
    within :data:`RTOL` of the largest magnitude, everything else equal. Returns the worst error."""
    got = _run(pieces, feeds, [t.name for t in io.outputs], what)
    floats = [t.name for t in io.outputs if t.dtype.startswith("float")]
    for t in io.outputs:
        if t.name not in floats and not np.array_equal(got[t.name], reference[t.name]):
            raise VerificationError(f"output {t.name!r} ({t.dtype}): {what} differ; nothing was written")
    result = compare(what, {n: got[n] for n in floats}, {n: reference[n] for n in floats}, RTOL)
    if not result.passed:
        raise VerificationError(f"{what} fails:\n{result.report()}\nnothing was written")
    return max((o.max_rel for o in result.outputs), default=0.0)


def _verify_batches(whole: onnx.ModelProto, pieces: dict[str, onnx.ModelProto], io: SubgraphSpec,
                    bounds: tuple[int, int], seed: int) -> float:
    """A dynamic batch: the split vs the whole at the largest batch, and a batch of distinct inputs
    row by row vs each row alone (the whole graph at the smallest batch, the row repeated to fill it)."""
    lo, hi = bounds
    names = [t.name for t in io.outputs]
    feeds = random_feeds(io.inputs, seed + 1, batch=hi)
    reference = _run({"model": whole}, feeds, names, f"the whole graph at batch {hi}")
    worst = _verify(pieces, feeds, reference, io, f"split vs whole at batch {hi}") if pieces else 0.0
    alone = [_run({"model": whole}, {n: np.repeat(x[k:k + 1], lo, axis=0) for n, x in feeds.items()}, names,
                  f"the whole graph at batch {lo}") for k in range(hi)]
    rows = {n: np.concatenate([a[n][:1] for a in alone]) for n in names}
    return max(worst, _verify({"model": whole}, feeds, rows, io, f"rows of batch {hi} vs each row alone"))


def _record(p: Partition) -> PartitionRecord:
    return PartitionRecord(p.devices, p.streams, p.launch_ms, p.whole_ms, p.critical_path_ms, p.predicted_speedup,
                           p.verdict, tuple(PartitionedSubgraph(s.name, s.stream, s.share, s.cost_ms)
                                            for s in p.subgraphs))


def export_module(module, example_inputs: tuple, config: OnnxExportConfig = OnnxExportConfig(),
                  input_names: list[str] | None = None, output_names: list[str] | None = None, opset: int = 18,
                  log: Callable[[str], None] = print) -> tuple[Path, ExportManifest]:
    """Any ``torch.nn.Module`` with example inputs (their shapes are the export's) → the same path as a
    user's ONNX file: ``torch.onnx.export`` to a temporary file, then :func:`export_onnx` (which checks,
    partitions, verifies and writes it). Names default to ``input0..`` and ``output0..``."""
    import tempfile
    import warnings

    import torch

    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"expected a torch.nn.Module, got {type(module).__name__}")
    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not example_inputs or not all(isinstance(x, torch.Tensor) for x in example_inputs):
        raise ConfigError("example_inputs must be one or more torch tensors (one per forward() argument)")
    input_names = input_names or [f"input{i}" for i in range(len(example_inputs))]
    name = config.name or default_name(Path(type(module).__name__))
    with tempfile.TemporaryDirectory(prefix="parnet-module-") as tmp:
        path = Path(tmp) / f"{name}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(module.eval(), example_inputs, str(path), opset_version=opset, dynamo=False,
                              input_names=input_names, output_names=output_names, external_data=False)
        return export_onnx(path, replace(config, name=name), log=log)
