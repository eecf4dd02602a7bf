"""``parnet-train``: a small-input ParNet trained on scikit-learn's bundled digits (no download)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models.config import ACTIVATIONS, MAX_WIDTH
from . import common


def planes(text: str) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated widths like 16,32,64,64, got {text!r}") from None
    if len(values) != 4 or not all(0 < v <= MAX_WIDTH for v in values):
        raise argparse.ArgumentTypeError(f"expected 4 widths in 1..{MAX_WIDTH}, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    from ..train import DIGITS_PLANES

    p = argparse.ArgumentParser(prog="parnet-train", description=(
        "Train a small-input ParNet on scikit-learn's bundled digits (8x8 upsampled to 32x32, fixed "
        "stratified split, 20% held out) and save it in parnet-deploy's checkpoint format."))
    p.add_argument("--output", type=Path, default=Path("digits_parnet.pt"), help="checkpoint path (.pt/.safetensors)")
    p.add_argument("--arch", default="parnet_cifar_s", help="a small-input variant (default parnet_cifar_s)")
    p.add_argument("--planes", type=planes, default=DIGITS_PLANES,
                   help="widths, e.g. 16,32,64,64 (default; the variant's own widths with --planes '')")
    p.add_argument("--act", choices=ACTIVATIONS, default="relu")
    p.add_argument("--epochs", type=common.positive_int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-accuracy", type=float, default=0.95, help="fail (exit 1) below this held-out top-1")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    common.check_writable_file(args.output, (".pt", ".safetensors"))
    from ..checkpoint import save_checkpoint
    from ..errors import VerificationError
    from ..train import TrainConfig, train

    model, acc = train(TrainConfig(arch=args.arch, planes=args.planes, act=args.act, epochs=args.epochs,
                                   seed=args.seed))
    save_checkpoint(model, args.output)
    print(f"saved {args.output} (held-out top-1 {acc:.2%})")
    if acc < args.min_accuracy:
        raise VerificationError(f"held-out top-1 {acc:.2%} is below --min-accuracy {args.min_accuracy:.0%}")
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-train", main))


if __name__ == "__main__":
    cli()
