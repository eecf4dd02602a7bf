"""`make demo`: the end-to-end story on the CPU default, with real data and no downloads.

zoo → train a small ParNet on digits (or reuse it) → parnet-export → parnet-build (auto: the
fastest CPU backend) → parnet-quantize (int8 Q/DQ, a flavor per engine) → parnet-build int8 → parnet-bench
(fp32 whole, streams, int8 engines) → accuracy of every stage (parnet-eval).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import parnet_deploy as pd

OUT = Path("demo_out")
CKPT = OUT / "digits_parnet.pt"


def zoo_table() -> None:
    print(f"{'model':<16}{'train params':>14}{'deploy params':>15}{'GFLOPs':>9}{'res':>6}{'depth':>7}"
          f"{'max rel err':>13}")
    g = torch.Generator().manual_seed(0)
    for name in pd.list_models():
        model = pd.create_model(name)
        deploy = pd.reparameterize(model)
        res = model.config.default_resolution
        x = torch.randn(1, 3, res, res, generator=g)
        with torch.no_grad():
            ref, out = model(x), deploy(x)
        err = ((out - ref).abs().max() / ref.abs().max()).item()
        print(f"{name:<16}{pd.count_params(model) / 1e6:>13.2f}M{pd.count_params(deploy) / 1e6:>14.2f}M"
              f"{pd.flops(deploy, res) / 1e9:>9.2f}{res:>6}{pd.depth(deploy):>7}{err:>13.1e}")


def step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def main() -> int:
    from .cli import bench, build, export, quantize, train
    from .cli import eval as evaluate

    step("ParNet model zoo (deploy = exact reparameterization)")
    zoo_table()

    OUT.mkdir(exist_ok=True)
    if CKPT.is_file():
        step(f"reusing {CKPT} (delete it to train again)")
    else:
        step(f"parnet-train --output {CKPT}  (digits, bundled with scikit-learn)")
        if train.main(["--output", str(CKPT)]) != 0:
            return 1
    commands = [
        (export.main, [str(CKPT), "--name", "digits", "--split", "shared", "--force"]),
        (build.main, ["export/digits", "--force"]),
        (quantize.main, ["export/digits", "--calib", "digits", "--force"]),
        (build.main, ["export/digits-int8", "--force"]),
        (bench.main, ["--engine", "engines/digits", "--mode", "whole", "--iterations", "200", "--duration", "1"]),
        (bench.main, ["--engine", "engines/digits", "--mode", "streams", "--iterations", "200", "--duration", "1"]),
        (bench.main, ["--engine", "engines/digits-int8", "--mode", "whole", "--iterations", "200", "--duration", "1"]),
        (evaluate.main, [str(CKPT), "--data", "digits", "--calib", "digits"]),
    ]
    names = {export.main: "parnet-export", build.main: "parnet-build", bench.main: "parnet-bench",
             evaluate.main: "parnet-eval", quantize.main: "parnet-quantize"}
    for fn, argv in commands:
        step(f"{names[fn]} {' '.join(argv)}")
        if fn(argv) != 0:
            return 1
    return 0


if __name__ == "__main__":
    from .cli.common import run

    sys.exit(run("demo", lambda argv: main()))
