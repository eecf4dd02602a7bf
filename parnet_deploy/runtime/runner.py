"""``ParnetRunner``: an export's (or engine's) graph, ready to call, on one or more devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts.export_manifest import ExportManifest, SubgraphSpec, TensorSpec, batch_of
from ..backends import Runner, StageTime, get_backend
from ..backends.base import Executor
from ..errors import RunnerClosedError, UserError
from .executors import EXECUTORS

MODES = (*EXECUTORS, "distributed")


class ParnetRunner:
    """``runner(x)``: float32 ``(N, 3, H, W)`` images → logits ``(N, classes)``, N the export's batch
    (any N within the bounds of a dynamic-batch export: :attr:`batch`); for a model of
    several inputs or outputs, ``runner.infer({name: array})`` → ``{name: array}`` (every input,
    each of the dtype and shape the manifest lists).

    Thread safety: one runner may be called from several threads at once (ONNX Runtime
    sessions are thread-safe, OpenVINO keeps a pool of infer requests, TensorRT runners and
    the distributed executor serialise calls). Usable as a context manager; :meth:`close`
    releases sessions and worker processes, and a closed runner refuses calls.
    """

    def __init__(self, manifest: ExportManifest, directory: Path, backend: str = "onnxruntime",
                 mode: str = "whole", threads: int | None = None, device: str | None = None,
                 precision: str | None = None, placement: dict[str, str] | None = None,
                 devices: dict[str, str] | None = None, timeout_s: float = 30.0, cuda_graph: bool = False,
                 check_finite: bool = True):
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.manifest = manifest
        self.directory = directory
        self.mode = mode
        self.precision = precision or manifest.precision
        # one backend per device the subgraphs are placed on (export directories: just one)
        self.placement = placement or {s.name: "default" for s in (manifest.whole, *manifest.subgraphs)}
        device_of = devices or {"default": device}
        self.backends = {tag: get_backend(backend, threads=threads, device=device_of[tag], precision=self.precision)
                         for tag in sorted(set(self.placement.values()))}
        # the whole graph's device; a distributed placement may name only the subgraphs: rank 0's
        self.backend = self.backends[self.placement.get(manifest.whole.name,
                                                        self.placement[manifest.subgraphs[-1].name])]
        self.executor: Executor
        if mode == "distributed":
            if cuda_graph:
                raise UserError("cuda_graph applies to the whole and streams modes on one GPU, not distributed")
            from .distributed import DistributedExecutor

            self.executor = DistributedExecutor(manifest, directory, backend, threads=threads,
                                                placement=placement, devices=devices, timeout_s=timeout_s,
                                                precision=self.precision, device=device)
        else:
            special = self.backend.executor(mode, manifest, self._load_runner, cuda_graph=cuda_graph)
            parallelism = sum(b.parallelism for b in self.backends.values())
            self.executor = special or EXECUTORS[mode](manifest, self._load_runner, parallelism)
        self.input_specs = {t.name: t for t in manifest.whole.inputs}
        self.output_specs = {t.name: t for t in manifest.whole.outputs}
        self.check_finite = check_finite
        self.closed = False

    def _load_runner(self, spec: SubgraphSpec, concurrency: int) -> Runner:
        backend = self.backends[self.placement[spec.name]]
        return backend.load(self.directory / spec.file, spec, concurrency=concurrency)

    # -- validation ----------------------------------------------------------------------
    @property
    def input_spec(self) -> TensorSpec:
        """The one input of an image model."""
        if len(self.input_specs) != 1:
            raise UserError(f"the model has {len(self.input_specs)} inputs ({', '.join(map(repr, self.input_specs))}); "
                            "call runner.infer({name: array, ...})")
        return next(iter(self.input_specs.values()))

    @property
    def output_spec(self) -> TensorSpec:
        if len(self.output_specs) != 1:
            raise UserError(f"the model has {len(self.output_specs)} outputs "
                            f"({', '.join(map(repr, self.output_specs))}); call runner.infer({{name: array, ...}})")
        return next(iter(self.output_specs.values()))

    def check_input(self, x: np.ndarray, spec: TensorSpec | None = None, batch: int | None = None) -> None:
        """One input's type, dtype, shape (at ``batch``; by default its own dim 0 on a batch axis),
        layout and values."""
        spec = spec or self.input_spec
        what = "input" if len(self.input_specs) == 1 else f"input {spec.name!r}"
        if not isinstance(x, np.ndarray):
            raise UserError(f"{what} must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.dtype(spec.dtype):
            raise UserError(f"{what} dtype must be {spec.dtype}, got {x.dtype}")
        if batch is None and spec.batch is not None and x.ndim == len(spec.shape):
            batch = batch_of((spec,), {spec.name: x}, f"export {self.manifest.name!r}")
        if tuple(x.shape) != spec.shape_at(batch):
            layout = " (N, C, H, W)" if len(self.input_specs) == 1 and len(spec.shape) == 4 else ""
            expected = spec.describe() if spec.batch is not None else str(tuple(spec.shape))
            raise UserError(f"{what} shape must be {expected}{layout}, got {tuple(x.shape)}")
        if not x.flags.c_contiguous:
            raise UserError(f"{what} must be C-contiguous (use np.ascontiguousarray)")
        # OpenVINO turns NaN/inf into ordinary-looking logits; refuse them on every backend alike
        if self.check_finite and x.dtype.kind == "f" and not np.isfinite(x).all():
            index = int(np.flatnonzero(~np.isfinite(x))[0])
            raise UserError(f"{what}[{index}] is {x.flat[index]}: not a finite number (load with check_finite=False "
                            f"to skip this check)")

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        if not isinstance(feeds, dict) or set(feeds) != set(self.input_specs):
            got = sorted(feeds) if isinstance(feeds, dict) else type(feeds).__name__
            raise UserError(f"expected the inputs {sorted(self.input_specs)}, got {got}")
        specs = tuple(self.input_specs.values())
        batch = batch_of(specs, {n: x for n, x in feeds.items() if isinstance(x, np.ndarray)},
                         f"export {self.manifest.name!r}")
        for name, x in feeds.items():
            self.check_input(x, self.input_specs[name], batch)

    @property
    def batch(self):
        """The export's bounded batch axis (``.min``, ``.max``), or None: static shapes."""
        return self.manifest.batch

    # -- running ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise RunnerClosedError("runner is closed; load it again")

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_open()
        self.check_feeds(feeds)
        return self.executor.infer(feeds)

    def infer_timed(self, x: np.ndarray | dict[str, np.ndarray]) -> tuple[np.ndarray | dict, list[StageTime]]:
        """One call with its per-subgraph times: an image → logits, or feeds → outputs by name."""
        self._check_open()
        if isinstance(x, dict):
            self.check_feeds(x)
            return self.executor.infer_timed(x)
        self.check_input(x)
        out, times = self.executor.infer_timed({self.input_spec.name: x})
        return out[self.output_spec.name], times

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._check_open()
        self.check_input(x)
        return self.executor.infer({self.input_spec.name: x})[self.output_spec.name]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.executor.close()

    def __enter__(self) -> ParnetRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
