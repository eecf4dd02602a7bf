"""`pip install .` with no extras: runtime, engines and bench work without PyTorch (about 30 s)."""

import subprocess
import sys
from pathlib import Path

import torch

import parnet_deploy as pd
from parnet_deploy.export import ExportConfig, export_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_bare_install.sh"


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


def test_gpu_test_installs_only_what_is_missing_and_never_torch(tmp_path):
    """scripts/gpu_missing.py: what make gpu-test hands to pip."""
    import importlib.metadata as md

    numpy_version = md.version("numpy")
    (tmp_path / "pyproject.toml").write_text(f'''
[project]
name = "x"
dependencies = ["numpy>={numpy_version}", "torch>=99", "surely-not-installed-pkg>=1"]
[project.optional-dependencies]
export = ["numpy<1.0"]
dev = ["pytest>=1"]
gpu = ["tensorrt>=10"]
''')
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_missing.py"), str(tmp_path / "pyproject.toml")],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["surely-not-installed-pkg>=1", "numpy<1.0"]
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_missing.py"), str(tmp_path / "pyproject.toml"),
                        "--extra", "gpu"], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ([] if _installed("tensorrt") else ["tensorrt>=10"])


def _installed(name):
    import importlib.metadata as md

    try:
        md.version(name)
    except md.PackageNotFoundError:
        return False
    return True
