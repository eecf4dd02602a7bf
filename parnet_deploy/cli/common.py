"""What every CLI shares: one error path, exit codes, logging, reusable argument parsers."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ..errors import ParnetError, UserError


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
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


def resolution(text: str) -> tuple[int, int]:
    """``224`` or ``224x320`` (H x W)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 224 or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected 224 or HxW, got {text!r}")
    return parts[0], parts[1]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("checkpoint")
    g.add_argument("--arch", help="model name (see --list-models); default: inferred from tensor shapes")
    g.add_argument("--act", choices=["relu", "silu"],
                   help="activation; official checkpoints do not record it and the released code builds relu "
                        "(the default for them)")
    g.add_argument("--ema", action="store_true", help="use the EMA weights of a timm training checkpoint")
