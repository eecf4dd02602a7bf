"""The one interface every backend implements (Polygraphy's loader/runner split).

A backend class is both halves of one engine:

- the builder side (class methods): ``available()``, ``version()``, ``devices()``,
  ``build(source, engine, device, options)``: one ONNX file → one engine file for one device;
- the runner side: an instance bound to one device and a thread budget, whose ``load(path,
  spec)`` turns an ONNX or engine file into a :class:`Runner`.

Runners validate in ``infer`` and compute in ``infer_impl``; every runner may be called from
several threads at once. The runtime and the engine builder talk to backends only through this.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..artifacts.engines_manifest import BuildOptions, DeviceRecord
from ..artifacts.export_manifest import ExportManifest, SubgraphSpec, TensorSpec, batch_of
from ..errors import BackendMissingError, ExportError, RunnerClosedError, UserError
from ..hardware import cpu_model
from .info import BackendInfo

MAX_THREADS = 1024  # as the C API: beyond this a runtime spends its time creating threads, or hangs


@dataclass(frozen=True)
class StageTime:
    name: str
    start: float  # seconds, perf_counter, relative to the start of the call
    end: float

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1e3


def _describe(tensors: tuple[TensorSpec, ...]) -> list[str]:
    return [f"{t.name} {t.dtype}{t.describe()}" for t in tensors]


def reported(name: str, dims: tuple, dtype: str, declared: TensorSpec | None) -> TensorSpec:
    """A tensor as an engine reports it, its dynamic dim 0 (a str, None or a negative number) read as
    the manifest's bounded batch where the manifest declares one; the Runner then compares."""
    dims = tuple(dims)
    dynamic = bool(dims) and not (isinstance(dims[0], int) and dims[0] > 0)
    if dynamic and declared is not None and declared.batch is not None:
        dims = (declared.batch, *dims[1:])
    return TensorSpec(name, dims, dtype)


class Runner(ABC):
    """Executes one (sub)graph: ``{input name: array}`` → ``{output name: array}``.

    A subclass reads the tensors its engine reports (names, shapes, dtypes) before it calls
    ``__init__``; they must be the manifest's ``spec`` exactly, or the runner is refused at load.
    ``infer`` then checks every call's names, dtypes and shapes against the spec, and calls
    ``infer_impl``. A runner is a context manager that closes itself.
    """

    def __init__(self, spec: SubgraphSpec, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]):
        for kind, declared, reported in (("inputs", spec.inputs, inputs), ("outputs", spec.outputs, outputs)):
            if tuple(declared) != tuple(reported):
                raise ExportError(f"{spec.name}: the model's {kind} are {_describe(tuple(reported))}, the manifest "
                                  f"says {_describe(tuple(declared))}")
        self.spec = spec
        self._inputs = {t.name: (t, np.dtype(t.dtype)) for t in spec.inputs}
        self.closed = False

    def check_feeds(self, feeds: dict[str, Any]) -> int | None:
        """Names, dtypes and shapes of a call's inputs; returns its batch (None: static shapes)."""
        if self.closed:
            raise RunnerClosedError(f"{self.spec.name}: runner is closed; load it again")
        if feeds.keys() != self._inputs.keys():
            raise UserError(f"{self.spec.name}: expected inputs {sorted(self._inputs)}, got {sorted(feeds)}")
        batch = batch_of(self.spec.inputs, feeds, self.spec.name)
        for name, (t, dtype) in self._inputs.items():
            x, shape = feeds[name], t.shape_at(batch)
            if getattr(x, "dtype", None) != dtype or tuple(getattr(x, "shape", ())) != shape:
                raise UserError(f"{self.spec.name}: input {name!r} has dtype {getattr(x, 'dtype', type(x).__name__)} "
                                f"and shape {list(getattr(x, 'shape', ()))}, expected {dtype} and {list(shape)}")
        return batch

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feeds(feeds)
        return self.infer_impl(feeds)

    def infer_array(self, x: np.ndarray) -> np.ndarray:
        """Single input, single output: the friendly form used by evaluation."""
        return self.infer({self.spec.inputs[0].name: x})[self.spec.outputs[0].name]

    @abstractmethod
    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.close_impl()

    def close_impl(self) -> None:
        pass

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


LoadRunner = Callable[[SubgraphSpec, int], Runner]


def concurrent_subgraphs(width: int, parallelism: int) -> int:
    """How many subgraphs of a DAG ``width`` wide run at once: each keeps at least 2 intra-op threads.

    On few cores one subgraph already fills them, and concurrent subgraphs only fight
    (measured on 2 cores: 3 concurrent streams 1.25x slower than one whole graph); on a
    GPU or many cores independent streams overlap.
    """
    return max(1, min(width, parallelism // 2))


@runtime_checkable
class DeviceRunner(Protocol):
    """A runner that also takes and returns tensors where they live (torch tensors on its device):
    the distributed executor hands NCCL's device tensors to it without a trip through the host."""

    def infer_tensors(self, feeds: dict[str, Any]) -> dict[str, Any]: ...


class Executor(Protocol):
    """Runs an export's graph (whole, or its subgraphs along the DAG); what the runtime and bench ask."""

    mode: str
    workers: int  # how many subgraphs run at once (1: one at a time, in order)
    gpu_time_ms: list[float] | None  # device compute time per call, where the backend measures it

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[StageTime]]: ...

    def close(self) -> None: ...


class Backend(ABC):
    """One engine family. A subclass names its package's :class:`BackendInfo` (``class X(Backend,
    info=INFO)``), which sets the class variables below, and implements the methods."""

    info: ClassVar[BackendInfo]
    name: ClassVar[str]
    engine_suffix: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    device_kinds: ClassVar[tuple[str, ...]]
    runs_onnx: ClassVar[bool]

    def __init_subclass__(cls, info: BackendInfo | None = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if info is not None:
            cls.info, cls.name, cls.engine_suffix = info, info.name, info.engine_suffix
            cls.precisions, cls.device_kinds, cls.runs_onnx = info.precisions, info.device_kinds, info.runs_onnx

    # -- builder side ------------------------------------------------------------------------
    @classmethod
    def available(cls) -> bool:
        """Whether its library loads here (TensorRT also needs a GPU)."""
        try:
            cls.version()
        except BackendMissingError:
            return False
        return True

    @classmethod
    @abstractmethod
    def version(cls) -> str:
        """The library version engines are tied to; raises BackendMissingError if absent."""

    @classmethod
    def devices(cls) -> list[DeviceRecord]:
        """The devices this backend can build for on this machine."""
        return [cpu_device()]

    @classmethod
    def device(cls, item: str) -> DeviceRecord | None:
        """``cpu`` or a GPU index as given to ``--devices``: that device here, or None."""
        return next((d for d in cls.devices() if (item == "cpu" and d.kind == "cpu") or str(d.index) == item), None)

    @classmethod
    def check_precision(cls, precision: str) -> None:
        if precision not in cls.precisions:
            raise UserError(f"{cls.name} cannot build {precision} engines; it builds {', '.join(cls.precisions)}")

    @classmethod
    def build(cls, source: Path, engine: Path, device: DeviceRecord, options: BuildOptions) -> None:
        """Write one engine file for ``device`` from one ONNX file (validates, then ``build_impl``)."""
        cls.check_precision(options.precision)
        cls.build_impl(source, engine, device, options)

    @classmethod
    @abstractmethod
    def build_impl(cls, source: Path, engine: Path, device: DeviceRecord, options: BuildOptions) -> None: ...

    # -- runner side -------------------------------------------------------------------------
    def __init__(self, threads: int | None = None, device: str | None = None, precision: str = "fp32"):
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or not 1 <= threads <= MAX_THREADS):
            raise UserError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
        self.threads = threads or os.cpu_count() or 1
        self.device = device or "cpu"
        self.precision = precision

    @property
    def parallelism(self) -> int:
        """How many subgraphs could usefully run at once (threads on a CPU; streams on a GPU)."""
        return self.threads

    @abstractmethod
    def load(self, path: Path, spec: SubgraphSpec, concurrency: int = 1) -> Runner: ...

    def executor(self, mode: str, manifest: ExportManifest, load_runner: LoadRunner,
                 cuda_graph: bool = False) -> Executor | None:
        """A backend-specific executor for ``mode`` (on a GPU: CUDA streams, optionally captured into a
        CUDA graph), or None for the generic one. Asked for a graph it cannot capture, it raises."""
        if cuda_graph:
            raise UserError(f"CUDA graphs need a backend that enqueues on CUDA streams (torch or tensorrt on "
                            f"cuda:N), not {self.name} on {self.device}")
        return None

    @abstractmethod
    def describe(self) -> dict[str, str]:
        """Recorded in benchmark reports."""


def cpu_device() -> DeviceRecord:
    return DeviceRecord(tag="cpu", kind="cpu", name=cpu_model())
