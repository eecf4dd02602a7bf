"""`pip install .` with no extras: runtime, engines and bench work without PyTorch (about 30 s)."""

import subprocess
from pathlib import Path

import torch

import parnet_deploy as pd
from parnet_deploy.export import ExportConfig, export_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_bare_install.sh"


def test_bare_install_runs_bench_without_torch(tmp_path):
    torch.manual_seed(0)
    model = pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32))
    d, _ = export_model(model, ExportConfig(output=tmp_path / "export", name="bare", split="shared", verify=False),
                        log=lambda _: None)
    r = subprocess.run(["bash", str(SCRIPT), str(d), str(tmp_path / "venv")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "torch: not installed" in r.stdout and "bare install: OK" in r.stdout
    assert "torch==" not in r.stdout.split("installed:")[1].splitlines()[0]
