"""``parnet-build EXPORT_DIR``: per-device engines (ONNX Runtime, OpenVINO or TensorRT), the fastest by default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import common

DESCRIPTION = """\
Build one engine per subgraph (and the whole graph) for each device into
engines/<name>/<device-tag>/, plus engines.json (backend and version, devices with GPU name,
compute capability and UUID or the CPU model, placement of subgraphs on devices, precision,
build options, sha256 and size of every source and engine).

--backend auto (the default) builds the whole graph with every CPU backend installed here
(onnxruntime, openvino), measures each, keeps the fastest and records the measurements.

  parnet-build export/parnet_s                                     # fastest CPU backend here
  parnet-build export/parnet_s-int8                                # an int8 export from parnet-quantize
  parnet-build export/digits --precision bf16 --eval digits        # OpenVINO bf16, accuracy-gated
  parnet-build export/parnet_s --backend tensorrt --devices 0,1,2 --placement auto
"""


def build_parser() -> argparse.ArgumentParser:
    from ..backends import ENGINE_BACKENDS
    from ..engines.build import PRECISIONS
    from ..precision.int8 import METHODS

    p = argparse.ArgumentParser(prog="parnet-build", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export_dir", type=Path, help="an export directory written by parnet-export or parnet-quantize")
    p.add_argument("--backend", choices=("auto", *ENGINE_BACKENDS), default="auto",
                   help="auto (default: measure every CPU backend here, keep the fastest), or one backend")
    p.add_argument("--devices", help="'cpu' (CPU backends' default) or GPU indices, e.g. 0,1,2 (tensorrt default 0)")
    p.add_argument("--placement", default="auto",
                   help="auto: measure each subgraph on each device and minimise the critical path (default); "
                        "official: stream k on device k; or a JSON file {\"stream0\": \"0\", ...}")
    p.add_argument("--output", type=Path, default=Path("engines"), help="parent folder (default: engines)")
    p.add_argument("--timing-cache", type=Path, metavar="DIR",
                   help="TensorRT: folder of timing caches (one per GPU model and TensorRT version)")
    p.add_argument("--force", action="store_true", help="replace existing engines of the same name")
    q = p.add_argument_group("precision")
    q.add_argument("--precision", choices=PRECISIONS, default="export",
                   help="export: the export's own (fp32, fp16, or int8 from parnet-quantize); bf16: OpenVINO's bf16 "
                        "inference on an fp32 export (native-bf16 CPUs; needs --eval); int8: quantize an fp32 export "
                        "here (needs --calib). Outputs engines/<name>[-bf16|-int8]")
    q.add_argument("--calib", metavar="SOURCE", help="calibration images: digits, a .npz, or a folder of images")
    q.add_argument("--calib-method", choices=METHODS, default="minmax")
    q.add_argument("--eval", dest="eval_source", metavar="SOURCE",
                   help="labeled set for the accuracy gate (default: digits -> held-out split, else --calib)")
    q.add_argument("--max-drop", type=float, default=1.0,
                   help="fail when top-1 drops more than this many points vs fp32 (default 1.0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..engines.build import BuildConfig, build_engines
    from ..errors import UserError

    if args.placement not in ("auto", "official") and not Path(args.placement).is_file():
        raise UserError(f"--placement: expected auto, official or a JSON file; {args.placement} does not exist")
    build_engines(args.export_dir, BuildConfig(backend=args.backend, devices=args.devices, placement=args.placement,
                                               output=args.output, timing_cache=args.timing_cache, force=args.force,
                                               precision=args.precision, calib=args.calib,
                                               calib_method=args.calib_method, max_drop=args.max_drop,
                                               eval_source=args.eval_source))
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-build", main))


if __name__ == "__main__":
    cli()
