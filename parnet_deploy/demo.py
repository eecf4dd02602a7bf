"""`make demo`: the end-to-end story on the CPU default."""

from __future__ import annotations

import sys

import torch

import parnet_deploy as pd


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


def main() -> int:
    print("== ParNet model zoo (deploy = exact reparameterization) ==")
    zoo_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
