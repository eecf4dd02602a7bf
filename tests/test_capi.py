"""The C API, through a real C compiler: statuses, outputs, threads, memory errors."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.capi import _impl
from parnet_deploy.errors import UserError
from parnet_deploy.export import ExportConfig, export_model

from conftest import randomize_bn, rel_err

ROOT = Path(__file__).resolve().parents[1]
CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="needs a C compiler")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("capi")
    pytest.importorskip("cffi")
    subprocess.run([sys.executable, "-m", "parnet_deploy.capi.build", str(root / "lib")], check=True,
                   capture_output=True)
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    d, _ = export_model(model, ExportConfig(output=root, name="m", split="shared", verify=False), log=lambda _: None)
    tampered = root / "tampered"
    shutil.copytree(d, tampered)
    with open(tampered / "fusion.onnx", "ab") as f:
        f.write(b"\0")
    return root, d, tampered


def _compile(root: Path, flags: list[str], name: str) -> Path:
    exe = root / name
    lib = root / "lib"
    subprocess.run([CC, "-std=c99", "-g", "-Wall", "-Werror", *flags, f"-I{ROOT / 'include'}",
                    str(ROOT / "tests" / "capi" / "capi_test.c"), "-o", str(exe), f"-L{lib}",
                    f"-Wl,-rpath,{lib}", "-lparnet_rt", "-lpthread"], check=True)
    return exe


def _pattern(n: int) -> np.ndarray:
    i = np.arange(n, dtype=np.uint64)
    return (((i * 7919) % 255).astype(np.float32) / np.float32(127.5) - 1).astype(np.float32)


def test_c_program_statuses_threads_and_outputs(built):
    root, d, tampered = built
    exe = _compile(root, ["-O1"], "capi_test")
    out = root / "out.f32"
    r = subprocess.run([str(exe), str(d), str(tampered), str(out), "200"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ALL OK"), r.stdout + r.stderr
    with runtime.load(d) as run:
        x = _pattern(int(np.prod(run.input_spec.shape))).reshape(run.input_spec.shape)
        expected = run(x)
    got = np.fromfile(out, dtype=np.float32).reshape(expected.shape)
    assert rel_err(got, expected) <= 1e-6


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_c_program_is_clean_under_valgrind(built):
    root, d, tampered = built
    exe = _compile(root, ["-O0"], "capi_test_vg")
    # Python's own allocator and ONNX Runtime's arenas are not ours to judge: leaks are not
    # checked, invalid reads/writes anywhere in the process are (exit code 99).
    r = subprocess.run(["valgrind", "--error-exitcode=99", "--leak-check=no", "--track-origins=no",
                        "--suppressions=" + str(ROOT / "tests" / "capi" / "python.supp"),
                        str(exe), str(d), str(tampered), str(root / "o.f32"), "5"],
                       capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONMALLOC": "malloc"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "ALL OK" in r.stdout


@pytest.mark.parametrize("text, expected", [
    (None, {}), ("", {}), ("mode=streams; threads=2", {"mode": "streams", "threads": 2}),
    ("backend=onnxruntime;device=cpu;", {"backend": "onnxruntime", "device": "cpu"}),
])
def test_option_parsing(text, expected):
    assert _impl.parse_options(text) == expected


@pytest.mark.parametrize("text", ["mode", "threads=2.5", "speed=fast", "mode="])
def test_bad_options(text):
    with pytest.raises(UserError, match="bad option"):
        _impl.parse_options(text)
