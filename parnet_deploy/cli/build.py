"""``parnet-build EXPORT_DIR``: per-device engines (ONNX Runtime, OpenVINO or TensorRT), the fastest by default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import args, common

if TYPE_CHECKING:
    from ..engines.build import BuildConfig

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


CALIBRATION = args.CalibrationArgs()
RUNTIME = args.RuntimeArgs(build=True)
OUTPUT = args.OutputDirArgs("engines", holds="engines", replaces="existing engines")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parnet-build", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export_dir", type=Path, help="an export directory written by parnet-export or parnet-quantize")
    p.add_argument("--placement", default="auto",
                   help="auto: measure each subgraph on each device and minimise the critical path (default); "
                        "official: stream k on device k; or a JSON file {\"stream0\": \"0\", ...}")
    p.add_argument("--timing-cache", type=Path, metavar="DIR",
                   help="TensorRT: folder of timing caches (one per GPU model and TensorRT version)")
    p.add_argument("--batch-opt", type=common.positive_int, metavar="N",
                   help="a dynamic-batch export: the batch TensorRT tunes its kernels for (its optimization "
                        "profile is MIN/N/MAX; default MAX). Recorded in engines.json for every backend")
    RUNTIME.add_to_parser(p)
    CALIBRATION.add_to_parser(p)
    OUTPUT.add_to_parser(p)
    return p


def parse(argv: list[str] | None = None) -> tuple[Path, BuildConfig]:
    """The command line → a validated ``BuildConfig``, and the export directory."""
    ns = build_parser().parse_args(argv)
    runtime, calibration, output = RUNTIME.parse(ns), CALIBRATION.parse(ns), OUTPUT.parse(ns)
    from ..engines.build import BuildConfig
    from ..errors import UserError

    if ns.placement not in ("auto", "official") and not Path(ns.placement).is_file():
        raise UserError(f"--placement: expected auto, official or a JSON file; {ns.placement} does not exist")
    config = BuildConfig(backend=runtime.backend, devices=runtime.device, placement=ns.placement,
                         output=output.parent, timing_cache=ns.timing_cache, force=output.force,
                         precision=runtime.precision, calib=calibration.calib, calib_method=calibration.method,
                         max_drop=calibration.max_drop, eval_source=calibration.eval_source,
                         batch_opt=ns.batch_opt)
    config.validate()
    return ns.export_dir, config


def main(argv: list[str] | None = None) -> int:
    export_dir, config = parse(argv)
    from ..engines.build import build_engines

    build_engines(export_dir, config)
    return 0


def cli() -> None:
    sys.exit(common.run("parnet-build", main))


if __name__ == "__main__":
    cli()
