"""``parnet-export CKPT``: checkpoint → verified ONNX export directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import args, common

DESCRIPTION = """\
Export a ParNet checkpoint to export/<name>/: the deploy-form graph (model.onnx), one ONNX
per stream plus the fusion/head subgraph (stream0..2.onnx, fusion.onnx; the shared split adds
stem.onnx), manifest.json (config, sha256 of every file, subgraph inputs/outputs, DAG) and
reference.npz. Verification (onnx.checker, TensorRT op gate, ONNX Runtime vs PyTorch) runs
by default; a failed check writes nothing and exits 1. Bad input exits 2.
"""


OUTPUT = args.OutputDirArgs("export", holds="exports", replaces="an existing export",
                            name_help="export name (default: the arch, e.g. parnet_s)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-export", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="official timm checkpoint, state_dict, or our .pt/.safetensors")
    common.add_checkpoint_args(p)
    g = p.add_argument_group("export")
    g.add_argument("--resolution", type=common.resolution,
                   help="input size, 224 or HxW (default: 224, or 32 for the small-input variants)")
    g.add_argument("--opset", type=int, default=18, help="ONNX opset, 18-20 (default 18)")
    g.add_argument("--split", choices=["replicated", "shared"], default="replicated",
                   help="replicated: each stream recomputes its stem prefix (official multi-GPU split); "
                        "shared: a stem subgraph computes it once (default: replicated)")
    g.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="fp16: fp16 inside, fp32 input and logits (default fp32)")
    g.add_argument("--no-verify", dest="verify", action="store_false", help="skip the ONNX Runtime checks")
    g.add_argument("--no-torch-weights", dest="torch_weights", action="store_false",
                   help="do not write deploy.safetensors (the deploy-form weights the torch backend runs from; "
                        "about the size of model.onnx)")
    OUTPUT.add_to_parser(p)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    from ..artifacts.files import check_target
    from ..checkpoint import load_checkpoint
    from ..export.pipeline import ExportConfig, export_model

    output = OUTPUT.parse(ns)
    config = ExportConfig(output=output.parent, name=output.name, resolution=ns.resolution, opset=ns.opset,
                          split=ns.split, precision=ns.precision, force=output.force, verify=ns.verify,
                          torch_weights=ns.torch_weights)
    config.validate()
    if output.name is not None:
        check_target(output.parent / output.name, output.force, "manifest.json", ns.checkpoint)  # before loading
    t0 = time.perf_counter()
    model = load_checkpoint(ns.checkpoint, arch=ns.arch, act=ns.act, use_ema=ns.ema)
    c = model.config
    print(f"loaded {ns.checkpoint} as {c.arch} (planes {list(c.planes)}, blocks {list(c.num_blocks)}, "
          f"{c.num_classes} classes, act {c.act}) ... {time.perf_counter() - t0:.2f} s")
    export_model(model, config)
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-export", main))


if __name__ == "__main__":
    cli()
