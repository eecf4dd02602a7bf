"""``parnet-export CKPT``: checkpoint → verified ONNX export directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import common

DESCRIPTION = """\
Export a ParNet checkpoint to export/<name>/: the deploy-form graph (model.onnx), one ONNX
per stream plus the fusion/head subgraph (stream0..2.onnx, fusion.onnx; the shared split adds
stem.onnx), manifest.json (config, sha256 of every file, subgraph inputs/outputs, DAG) and
reference.npz. Verification (onnx.checker, TensorRT op gate, ONNX Runtime vs PyTorch) runs
by default; a failed check writes nothing and exits 1. Bad input exits 2.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-export", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="official timm checkpoint, state_dict, or our .pt/.safetensors")
    common.add_checkpoint_args(p)
    g = p.add_argument_group("export")
    g.add_argument("--name", help="export name (default: the arch, e.g. parnet_s)")
    g.add_argument("--output", type=Path, default=Path("export"), help="parent folder (default: export)")
    g.add_argument("--resolution", type=common.resolution,
                   help="input size, 224 or HxW (default: 224, or 32 for the small-input variants)")
    g.add_argument("--opset", type=int, default=18, help="ONNX opset, 18-20 (default 18)")
    g.add_argument("--split", choices=["replicated", "shared"], default="replicated",
                   help="replicated: each stream recomputes its stem prefix (official multi-GPU split); "
                        "shared: a stem subgraph computes it once (default: replicated)")
    g.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="fp16: fp16 inside, fp32 input and logits (default fp32)")
    g.add_argument("--force", action="store_true", help="replace an existing export of the same name")
    g.add_argument("--no-verify", dest="verify", action="store_false", help="skip the ONNX Runtime checks")
    g.add_argument("--no-torch-weights", dest="torch_weights", action="store_false",
                   help="do not write deploy.safetensors (the deploy-form weights the torch backend runs from; "
                        "about the size of model.onnx)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..checkpoint import load_checkpoint
    from ..artifacts.files import check_target
    from ..errors import UserError
    from ..export.pipeline import ExportConfig, export_model

    config = ExportConfig(output=args.output, name=args.name, resolution=args.resolution, opset=args.opset,
                          split=args.split, precision=args.precision, force=args.force, verify=args.verify,
                          torch_weights=args.torch_weights)
    config.validate()
    if args.output.exists() and not args.output.is_dir():
        raise UserError(f"--output {args.output} is a file; it names the folder that holds exports")
    if args.name is not None:
        check_target(args.output / args.name, args.force, "manifest.json", args.checkpoint)  # before loading
    t0 = time.perf_counter()
    model = load_checkpoint(args.checkpoint, arch=args.arch, act=args.act, use_ema=args.ema)
    c = model.config
    print(f"loaded {args.checkpoint} as {c.arch} (planes {list(c.planes)}, blocks {list(c.num_blocks)}, "
          f"{c.num_classes} classes, act {c.act}) ... {time.perf_counter() - t0:.2f} s")
    export_model(model, config)
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-export", main))


if __name__ == "__main__":
    cli()
