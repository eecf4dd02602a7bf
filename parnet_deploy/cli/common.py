"""What every CLI shares: one error path, exit codes, logging, reusable argument parsers."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from ..backends.base import MAX_THREADS
from ..bench.timing import MAX_SECONDS
from ..errors import ParnetError, UserError
from ..models.config import ACTIVATIONS, MAX_SIDE

# modules that only the [export] extra installs: a CLI that needs one says so in one line
EXTRA_OF = {"torch": "export", "onnxscript": "export", "onnx_graphsurgeon": "export", "onnxconverter_common": "export",
            "safetensors": "export", "sklearn": "export", "matplotlib": "plot"}


def run(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """User mistakes → one line on stderr and exit 2; failed checks → exit 1; Ctrl-C → 130."""
    logger = logging.getLogger("parnet_deploy")  # ours only: third-party INFO logs stay quiet
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        return main(argv)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except ParnetError as e:
        print(f"{prog}: FAILED: {e}", file=sys.stderr)
        return e.exit_code
    except ModuleNotFoundError as e:
        top = (e.name or "").partition(".")[0]
        if top not in EXTRA_OF:
            raise
        print(f"{prog}: error: this needs {top}, which is not installed: pip install 'parnet-deploy[{EXTRA_OF[top]}]'",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


def resolution(text: str) -> tuple[int, int]:
    """``224`` or ``224x320`` (H x W), each side at most the models' ``MAX_SIDE``."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 224 or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0 or max(parts) > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"expected 224 or HxW with sides in 1..{MAX_SIDE}, got {text!r}")
    return parts[0], parts[1]


def batch_bounds(text: str) -> tuple[int, int]:
    """``--batch``: ``4`` (static) or ``1..8`` (a dynamic batch axis with bounds)."""
    from ..artifacts.schema import MAX_BATCH

    lo, sep, hi = text.partition("..")
    try:
        bounds = (int(lo), int(hi) if sep else int(lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN..MAX, got {text[:40]!r}") from None
    if not 1 <= bounds[0] <= bounds[1] <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"expected N or MIN..MAX with 1 <= MIN <= MAX <= {MAX_BATCH}, "
                                         f"got {text[:40]!r}")
    return bounds


def bounded_int(hi: int) -> Callable[[str], int]:
    """An argparse type: an integer from 1 to ``hi``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from 1 to {hi}, got {text!r}") from None
        if not 1 <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from 1 to {hi}, got {text!r}")
        return value
    return parse


positive_int = bounded_int(1 << 31)
thread_count = bounded_int(MAX_THREADS)


def add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("checkpoint")
    g.add_argument("--arch", help="model name (see --list-models); default: inferred from tensor shapes")
    g.add_argument("--act", choices=ACTIVATIONS,
                   help="activation; official checkpoints do not record it and the released code builds relu "
                        "(the default for them)")
    g.add_argument("--ema", action="store_true", help="use the EMA weights of a timm training checkpoint")


def finite_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0 (at most {MAX_SECONDS:g}), "
                                         f"got {text!r}")
    return value


def check_writable_file(path: Path | None, suffixes: tuple[str, ...] = (), reads: tuple[str | Path, ...] = (),
                        flag: str = "") -> None:
    """Fail before the work, not after it: the parent exists, the path is not a directory, the suffix fits,
    and it is not, nor lies inside, anything the command ``reads`` (writing it would destroy the input)."""
    if path is None:
        return
    out = path.resolve()
    for source in map(Path, reads):
        if source.exists() and (out == source.resolve() or out.is_relative_to(source.resolve())):
            raise UserError(f"{flag or 'the output'} {path} is or lies inside {source}, which this command reads; "
                            f"write it elsewhere")
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: {path.parent} is not a directory")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"cannot write {path}: expected a {' or '.join(suffixes)} file")
