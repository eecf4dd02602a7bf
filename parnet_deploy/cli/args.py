"""Argument groups that several CLIs share, in the style of Polygraphy's ``tools/args``.

Each group has ``add_to_parser(parser)``, which adds one argparse argument group (the options
and their help, written once, here), and ``parse(args)``, which turns the parsed namespace into
a typed, frozen, validated config: the existing one where the library has it (``TimingConfig``),
else a small one below that the CLI hands on. Bad values fail as before: argparse's own error
(exit 2) for a malformed value, a ``UserError`` (one line, exit 2 through ``common.run``) for a
value out of range.

  calibration  --calib --calib-method [--eval --max-drop]   → Calibration
  runtime      --backend --precision --device(s) [--cuda-graph --mode --threads]  → Runtime
  timing       --warmup --iterations --duration              → bench.timing.TimingConfig
  output       --output [--name] --force (a folder of artifacts)  → OutputDir
  reports      --json [--plot] (files, checked before the work)   → Reports

Imports of the library are made on use, so that importing a CLI stays cheap (and torch-free).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from . import common

if TYPE_CHECKING:
    from ..bench.timing import TimingConfig

# -- calibration (int8) --------------------------------------------------------------------------

CALIB_HELP = "calibration images: digits (its training split), a .npz, or a folder of images"
CALIB_METHOD_HELP = "how the int8 activation ranges are calibrated (default: minmax)"
EVAL_HELP = "labeled set for the accuracy gate (default: digits -> held-out split, else --calib)"
MAX_DROP_HELP = ("the accuracy gate: top-1 may drop at most this many points vs fp32 (unlabeled data: %% "
                 "disagreement with fp32; default 1.0)")


@dataclass(frozen=True)
class Calibration:
    """calib: digits | file.npz | folder (None: no int8 here); method: one of ``precision.int8.METHODS``;
    eval_source: the accuracy gate's labeled set (None: digits -> held-out split, else ``calib``);
    max_drop: the gate, in top-1 points (or % disagreement with fp32 on unlabeled data)."""

    calib: str | None = None
    method: str = "minmax"
    eval_source: str | None = None
    max_drop: float = 1.0

    def validate(self) -> None:
        from ..precision.int8 import METHODS

        if self.method not in METHODS:
            raise UserError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (0 <= self.max_drop <= 100):
            raise UserError(f"--max-drop must be between 0 and 100 points, got {self.max_drop}")


class CalibrationArgs:
    """``required``: --calib must be given (parnet-quantize); ``gate``: add --eval and --max-drop
    (the accuracy gate of parnet-build and parnet-quantize; parnet-eval reports, it does not gate)."""

    def __init__(self, required: bool = False, gate: bool = True):
        self.required, self.gate = required, gate

    def add_to_parser(self, parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        from ..precision.int8 import METHODS

        g = parser.add_argument_group("calibration (int8)")
        g.add_argument("--calib", metavar="SOURCE", required=self.required, help=CALIB_HELP)
        g.add_argument("--calib-method", choices=METHODS, default="minmax", help=CALIB_METHOD_HELP)
        if self.gate:
            g.add_argument("--eval", dest="eval_source", metavar="SOURCE", help=EVAL_HELP)
            g.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS", help=MAX_DROP_HELP)
        return g

    def parse(self, args: argparse.Namespace) -> Calibration:
        config = Calibration(calib=args.calib, method=args.calib_method,
                             eval_source=getattr(args, "eval_source", None), max_drop=getattr(args, "max_drop", 1.0))
        config.validate()
        return config


# -- runtime: which backend, precision and devices ------------------------------------------------

@dataclass(frozen=True)
class Runtime:
    """What runs (parnet-bench) or what is built for (parnet-build, ``build``): backend (None: the
    export's default, or ``auto`` for a build), precision, devices (``--device`` for one run,
    ``--devices`` for a build), and, for a run, mode, threads and CUDA graphs."""

    backend: str | None = None
    precision: str | None = None
    device: str | None = None
    mode: str = "whole"
    threads: int | None = None
    cuda_graph: bool = False

    def load_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``runtime.load`` / ``bench.engine.bench_engine``."""
        return {"backend": self.backend, "mode": self.mode, "threads": self.threads, "precision": self.precision,
                "device": self.device, "cuda_graph": self.cuda_graph}


class RuntimeArgs:
    """``build=False``: running an export or engine directory (parnet-bench); ``build=True``: the
    backend, devices and precision engines are built for (parnet-build)."""

    def __init__(self, build: bool = False):
        self.build = build

    def add_to_parser(self, parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        g = parser.add_argument_group("runtime")
        if self.build:
            from ..backends import ENGINE_BACKENDS
            from ..engines.build import PRECISIONS

            g.add_argument("--backend", choices=("auto", *ENGINE_BACKENDS), default="auto",
                           help="auto (default: measure every CPU backend here, keep the fastest), or one backend")
            g.add_argument("--devices",
                           help="'cpu' (CPU backends' default) or GPU indices, e.g. 0,1,2 (tensorrt default 0)")
            g.add_argument("--precision", choices=PRECISIONS, default="export",
                           help="export: the export's own (fp32, fp16, or int8 from parnet-quantize); bf16: "
                                "OpenVINO's bf16 inference on an fp32 export (native-bf16 CPUs; needs --eval); "
                                "int8: quantize an fp32 export here (needs --calib). Outputs "
                                "engines/<name>[-bf16|-int8]")
            return g
        from ..backends import BACKENDS
        from ..runtime import MODES

        g.add_argument("--backend", choices=BACKENDS,
                       help="exports: onnxruntime (default) or openvino; engine directories name their own")
        g.add_argument("--precision", choices=["fp16", "bf16"],
                       help="exports only: bf16 runs an fp32 export with OpenVINO's bf16 inference precision; "
                            "the torch backend runs an fp32 export in fp16 or bf16")
        g.add_argument("--device", help="exports: cpu (default) or cuda:N (torch; onnxruntime with onnxruntime-gpu)")
        g.add_argument("--cuda-graph", action="store_true",
                       help="whole/streams on one GPU (torch, tensorrt): capture each call into a CUDA graph once "
                            "and replay it")
        g.add_argument("--mode", default="whole", choices=MODES,
                       help="whole: one session; streams: one per subgraph, independent ones concurrently; "
                            "distributed: one process per device (torch.distributed, gloo on CPU / NCCL on GPUs)")
        g.add_argument("--threads", type=common.thread_count, default=os.cpu_count() or 1,
                       help="threads in all (default: all cores)")
        return g

    def parse(self, args: argparse.Namespace) -> Runtime:
        if self.build:
            return Runtime(backend=args.backend, precision=args.precision, device=args.devices)
        return Runtime(backend=args.backend, precision=args.precision, device=args.device, mode=args.mode,
                       threads=args.threads, cuda_graph=args.cuda_graph)


# -- timing ---------------------------------------------------------------------------------------

class TimingArgs:
    """trtexec semantics (see ``bench.timing.TimingConfig``)."""

    def add_to_parser(self, parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        g = parser.add_argument_group("timing")
        g.add_argument("--warmup", type=common.finite_seconds, default=1.0, help="warm-up seconds (default 1)")
        g.add_argument("--iterations", type=common.positive_int, default=50, help="minimum calls (default 50)")
        g.add_argument("--duration", type=common.finite_seconds, default=3.0, help="minimum seconds (default 3)")
        return g

    def parse(self, args: argparse.Namespace) -> TimingConfig:
        from ..bench.timing import TimingConfig

        config = TimingConfig(args.warmup, args.iterations, args.duration)
        config.validate()
        return config


# -- output: a folder of artifacts ----------------------------------------------------------------

@dataclass(frozen=True)
class OutputDir:
    """parent: the folder that holds the artifacts (``export``, ``engines``); name: the artifact's
    folder in it (None: the command's default); force: replace an existing one of the same kind."""

    parent: Path
    name: str | None = None
    force: bool = False


class OutputDirArgs:
    """``default``: the parent folder; ``holds``: what it holds (for messages: exports, engines);
    ``name_help``: add --name with this help (None: no --name); ``replaces``: what --force replaces."""

    def __init__(self, default: str, holds: str, replaces: str, name_help: str | None = None):
        self.default, self.holds, self.replaces, self.name_help = Path(default), holds, replaces, name_help

    def add_to_parser(self, parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        g = parser.add_argument_group("output")
        g.add_argument("--output", type=Path, default=self.default, metavar="DIR",
                       help=f"parent folder (default: {self.default})")
        if self.name_help is not None:
            g.add_argument("--name", help=self.name_help)
        g.add_argument("--force", action="store_true", help=f"replace {self.replaces} of the same name")
        return g

    def parse(self, args: argparse.Namespace) -> OutputDir:
        config = OutputDir(args.output, getattr(args, "name", None), args.force)
        if config.parent.exists() and not config.parent.is_dir():
            raise UserError(f"--output {config.parent} is a file; it names the folder that holds {self.holds}")
        return config


# -- reports: result files (JSON, plots) ----------------------------------------------------------

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


@dataclass(frozen=True)
class Reports:
    json: Path | None = None
    plot: Path | None = None


class ReportArgs:
    """--json FILE, and --plot FILE with ``plot``; ``parse(args, reads)`` checks that each can be
    written, and is not, nor lies inside, anything in ``reads`` (before the work, not after)."""

    def __init__(self, plot: bool = False):
        self.plot = plot

    def add_to_parser(self, parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        g = parser.add_argument_group("output")
        g.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
        if self.plot:
            g.add_argument("--plot", type=Path, metavar="FILE.png",
                           help="latency histogram and CDF (--batch-sweep: latency and images/s against batch)")
        return g

    def parse(self, args: argparse.Namespace, reads: tuple[str | Path, ...] = ()) -> Reports:
        config = Reports(args.json, getattr(args, "plot", None))
        common.check_writable_file(config.json, (".json",), reads, "--json")
        common.check_writable_file(config.plot, PLOT_SUFFIXES, reads, "--plot")
        return config
