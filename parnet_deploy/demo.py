"""`make demo`: the end-to-end story on the CPU default.

zoo → a ParNet-S checkpoint in the official timm layout → parnet-export → parnet-bench.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import parnet_deploy as pd

OUT = Path("demo_out")


def zoo_table() -> None:
    print(f"{'model':<16}{'train params':>14}{'deploy params':>15}{'GFLOPs':>9}{'res':>6}{'depth':>7}{'max rel err':>13}")
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
    from .checkpoint import save_official_checkpoint
    from .cli import bench, export

    step("ParNet model zoo (deploy = exact reparameterization)")
    zoo_table()

    step("a ParNet-S checkpoint in the official timm layout (random weights)")
    OUT.mkdir(exist_ok=True)
    ckpt = OUT / "planes_92_192_384_1280_num_blocks_5_6_6_1_sebv_13_dropout_lin.pth.tar"
    torch.manual_seed(0)
    save_official_checkpoint(pd.create_model("parnet_s"), ckpt)
    print(ckpt)

    step(f"parnet-export {ckpt} --split shared --force")
    if export.main([str(ckpt), "--split", "shared", "--force"]) != 0:
        return 1

    for mode in ("whole", "streams"):
        step(f"parnet-bench --engine export/parnet_s --mode {mode}")
        if bench.main(["--engine", "export/parnet_s", "--mode", mode, "--iterations", "30", "--duration", "2"]) != 0:
            return 1
    return 0


if __name__ == "__main__":
    from .cli.common import run

    sys.exit(run("demo", lambda argv: main()))
