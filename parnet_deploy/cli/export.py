"""``parnet-export CKPT`` / ``parnet-export MODEL.onnx``: a ParNet checkpoint or any ONNX model →
a verified export directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import UserError
from . import args, common

DESCRIPTION = """\
Export a ParNet checkpoint to export/<name>/: the deploy-form graph (model.onnx), one ONNX
per stream plus the fusion/head subgraph (stream0..2.onnx, fusion.onnx; the shared split adds
stem.onnx), manifest.json (config, sha256 of every file, subgraph inputs/outputs, DAG) and
reference.npz. Verification (onnx.checker, TensorRT op gate, ONNX Runtime vs PyTorch) runs
by default; a failed check writes nothing and exits 1. Bad input exits 2.

Any other model: parnet-export MODEL.onnx [--input-shape NAME=1,3,H,W ...] [--split auto|none]
[--devices N] [--batch N|MIN..MAX]. The file is checked as untrusted input (size, external data refused,
onnx.checker, every shape inferred and static); a cost model measured on this machine decides
whether running the parallel branches as separate subgraphs pays on N devices, and a "why"
table says so. The split is verified against the whole graph (rtol 1e-5) before anything is
written; the manifest records the decision under "partition".
"""


MAX_DEVICES = 16  # a manifest's subgraph limit; OnnxExportConfig.validate checks it again

OUTPUT = args.OutputDirArgs("export", holds="exports", replaces="an existing export",
                            name_help="export name (default: the arch, e.g. parnet_s; for MODEL.onnx its stem)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-export", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, metavar="MODEL",
                   help="a ParNet checkpoint (official timm checkpoint, state_dict, or our .pt/.safetensors), "
                        "or any model as .onnx")
    common.add_checkpoint_args(p)
    g = p.add_argument_group("export")
    g.add_argument("--resolution", type=common.resolution,
                   help="input size, 224 or HxW (default: 224, or 32 for the small-input variants)")
    g.add_argument("--opset", type=int, default=18, help="ONNX opset, 18-20 (default 18)")
    g.add_argument("--split", choices=["replicated", "shared", "auto", "none"],
                   help="ParNet: replicated (each stream recomputes its stem prefix, the official multi-GPU "
                        "split; the default) or shared (a stem subgraph computes it once). ONNX: auto (the "
                        "cost model decides; the default) or none")
    g.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="fp16: fp16 inside, fp32 input and logits (default fp32)")
    g.add_argument("--batch", type=common.batch_bounds, metavar="N|MIN..MAX",
                   help="N: a static batch of N images; MIN..MAX: a dynamic batch axis, any batch from MIN to MAX "
                        "per call (verified at both bounds; engines size their buffers for MAX). Default 1 (an "
                        "ONNX model: as it and --input-shape say). An ONNX model needs dim 0 of every input "
                        "dynamic; --batch sets it (overriding --input-shape's dim 0)")
    g.add_argument("--no-verify", dest="verify", action="store_false", help="skip the ONNX Runtime checks")
    g.add_argument("--no-torch-weights", dest="torch_weights", action="store_false",
                   help="do not write deploy.safetensors (the deploy-form weights the torch backend runs from; "
                        "about the size of model.onnx)")
    o = p.add_argument_group("ONNX models (MODEL.onnx)")
    o.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="fix an input's dynamic dimensions, e.g. images=1,3,224,224 (repeat per input)")
    o.add_argument("--devices", type=int, default=1,
                   help=f"devices the split is planned for, 1..{MAX_DEVICES} (default 1: one CPU, where "
                        "splitting only pays if launches cost less than the overlap gives back)")
    o.add_argument("--threads", type=int, default=1, help="intra-op threads the cost model is measured with")
    o.add_argument("--normalization", action="append", default=[], metavar="NAME=MEAN,../STD,..",
                   help="declare how callers prepare an image input, (x / 255 - mean) / std per channel, e.g. "
                        "rgb=0.485,0.456,0.406/0.229,0.224,0.225 (repeat per input; the C image calls need one "
                        "with 3 channels)")
    OUTPUT.add_to_parser(p)
    return p


PARNET_ONLY = {"arch": None, "act": None, "ema": False, "resolution": None, "precision": "fp32",
               "torch_weights": True}
ONNX_ONLY = {"input_shape": [], "devices": 1, "threads": 1, "normalization": []}


def _given(ns: argparse.Namespace, defaults: dict) -> list[str]:
    return ["--" + k.replace("_", "-").replace("torch-weights", "no-torch-weights") for k, v in defaults.items()
            if getattr(ns, k) != v]


def parse_normalization(text: str):
    """``NAME=m0,m1,m2/s0,s1,s2`` → a :class:`Normalization` of input NAME (its bounds checked as a manifest's)."""
    from ..artifacts.export_manifest import Normalization
    from ..artifacts.schema import Fields
    from ..errors import ExportError

    name, sep, values = text.rpartition("=")
    mean, slash, std = values.partition("/")
    try:
        if not (sep and name and slash):
            raise ValueError
        fields = {"input": name, "mean": [float(v) for v in mean.split(",")],
                  "std": [float(v) for v in std.split(",")], "layout": "NCHW",
                  "note": "x = (x / 255 - mean) / std per channel, applied by the caller; not part of the graph"}
        return Normalization.parse(Fields(fields, "--normalization"))
    except (ValueError, ExportError) as e:
        detail = f": {e}" if isinstance(e, ExportError) else ""
        raise UserError(f"--normalization {text[:100]!r}: expected NAME=MEAN,.../STD,... with one mean and one std per "
                        f"channel{detail}") from None


def export_onnx_main(ns: argparse.Namespace, output) -> int:
    from ..export.onnx_export import OnnxExportConfig, export_onnx
    from ..export.onnx_source import parse_input_shapes

    config = OnnxExportConfig(output=output.parent, name=output.name, input_shapes=parse_input_shapes(ns.input_shape),
                              split=ns.split or "auto", devices=ns.devices, force=output.force, verify=ns.verify,
                              threads=ns.threads, normalizations=tuple(map(parse_normalization, ns.normalization)),
                              batch=ns.batch)
    config.validate()
    export_onnx(ns.checkpoint, config)
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    from ..artifacts.files import check_target
    from ..checkpoint import load_checkpoint
    from ..export.pipeline import ExportConfig, export_model

    output = OUTPUT.parse(ns)
    if ns.checkpoint.suffix.lower() == ".onnx":
        wrong = _given(ns, PARNET_ONLY) + (["--split " + ns.split] if ns.split in ("replicated", "shared") else [])
        if wrong:
            raise UserError(f"{', '.join(wrong)}: ParNet checkpoints only; an ONNX model takes --input-shape, "
                            "--split auto|none, --devices, --normalization, --batch")
        return export_onnx_main(ns, output)
    wrong = _given(ns, ONNX_ONLY) + (["--split " + ns.split] if ns.split in ("auto", "none") else [])
    if wrong:
        raise UserError(f"{', '.join(wrong)}: ONNX models only (MODEL.onnx); a checkpoint takes --split "
                        "replicated|shared")
    config = ExportConfig(output=output.parent, name=output.name, resolution=ns.resolution, opset=ns.opset,
                          split=ns.split or "replicated", precision=ns.precision, force=output.force, verify=ns.verify,
                          torch_weights=ns.torch_weights, batch=ns.batch or (1, 1))
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
