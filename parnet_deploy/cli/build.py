"""``parnet-build EXPORT_DIR``: per-device engines (TensorRT plans or ONNX Runtime optimized graphs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import common

DESCRIPTION = """\
Build one engine per subgraph (and the whole graph) for each device into
engines/<name>/<device-tag>/, plus engines.json (backend and version, devices with GPU name,
compute capability and UUID or the CPU model, placement of subgraphs on devices, precision,
build options, timing cache, sha256 of every source ONNX and engine).

  parnet-build export/parnet_s                                   # ONNX Runtime, this CPU
  parnet-build export/parnet_s --backend tensorrt --devices 0,1,2 --placement auto
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-build", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export_dir", type=Path, help="an export directory written by parnet-export")
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime",
                   help="onnxruntime (default; saves ORT's optimized graph per subgraph) or tensorrt (plans)")
    p.add_argument("--devices", help="'cpu' (onnxruntime default) or GPU indices, e.g. 0,1,2 (tensorrt default 0)")
    p.add_argument("--placement", default="auto",
                   help="auto: measure each subgraph on each device and minimise the critical path (default); "
                        "official: stream k on device k; or a JSON file {\"stream0\": \"0\", ...}")
    p.add_argument("--output", type=Path, default=Path("engines"), help="parent folder (default: engines)")
    p.add_argument("--timing-cache", type=Path, help="TensorRT timing cache to reuse and update")
    p.add_argument("--force", action="store_true", help="replace existing engines of the same name")
    q = p.add_argument_group("int8")
    q.add_argument("--precision", choices=["export", "int8"], default="export",
                   help="export: the export's own precision (fp32/fp16); int8: static PTQ to Q/DQ (needs --calib), "
                        "written to engines/<name>-int8")
    q.add_argument("--calib", metavar="SOURCE", help="calibration images: digits, a .npz, or a folder of images")
    q.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default="minmax")
    q.add_argument("--eval", dest="eval_source", metavar="SOURCE",
                   help="labeled set for the accuracy gate (default: digits -> held-out split, else --calib)")
    q.add_argument("--max-drop", type=float, default=1.0,
                   help="fail when int8 top-1 drops more than this many points vs fp32 (default 1.0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..engines.build import BuildConfig, build_engines

    if args.placement not in ("auto", "official") and not Path(args.placement).is_file():
        from ..errors import UserError

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
