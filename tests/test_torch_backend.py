"""The torch backend: an export's deploy-form weights (safetensors) run as slices of the PyTorch
model at the export's cut points, equal to ONNX Runtime on the CPU."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import randomize_bn, rel_err

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.artifacts.export_manifest import load_manifest
from parnet_deploy.errors import ParnetError
from parnet_deploy.export import ExportConfig, export_model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch-backend")
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    quiet = dict(log=lambda _: None)
    return {split: export_model(model, ExportConfig(output=root, name=split, split=split, verify=False), **quiet)[0]
            for split in ("shared", "replicated")} | {
        "bare": export_model(model, ExportConfig(output=root, name="bare", split="shared", verify=False,
                                                 torch_weights=False), **quiet)[0]}


@pytest.mark.parametrize("split", ["shared", "replicated"])
@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_torch_backend_equals_onnxruntime(exports, split, mode):
    d = exports[split]
    manifest = load_manifest(d)
    assert manifest.torch_weights == "deploy.safetensors" and "deploy.safetensors" in manifest.files
    x = np.random.default_rng(1).standard_normal(manifest.input.shape).astype(np.float32)
    with runtime.load(d, backend="onnxruntime", mode=mode) as ort, runtime.load(d, backend="torch", mode=mode) as tb:
        expected, got = ort(x), tb(x)
        assert rel_err(got, expected) <= 1e-5
        reference = np.load(d / "reference.npz")
        assert rel_err(tb(reference["image"]), reference["logits"]) <= 1e-6  # the exporter's own PyTorch output


def test_torch_backend_bf16_is_close(exports):
    d = exports["shared"]
    reference = np.load(d / "reference.npz")
    with runtime.load(d, backend="torch", precision="bf16") as tb:
        got = tb(reference["image"])
    assert got.dtype == np.float32 and rel_err(got, reference["logits"]) <= 0.1  # bf16 has 8 mantissa bits


def test_torch_backend_needs_the_weights_and_refuses_tampering(exports, tmp_path):
    with pytest.raises(ParnetError, match="no deploy weights for the torch backend"):
        runtime.load(exports["bare"], backend="torch")
    assert load_manifest(exports["bare"]).torch_weights is None
    d = tmp_path / "tampered"
    shutil.copytree(exports["shared"], d)
    with open(d / "deploy.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\1\2\3\4")
    with pytest.raises(ParnetError, match="deploy.safetensors does not match its sha256"):
        runtime.load(d, backend="torch")
    m = json.loads((d / "manifest.json").read_text())
    m["torch_weights"] = "../shared/deploy.safetensors"
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ParnetError, match="torch_weights: .* is not a valid name"):
        runtime.load(d, backend="torch")


def test_torch_backend_builds_nothing_and_auto_skips_it(exports):
    from parnet_deploy.backends import available_backends, backend_class

    assert "torch" not in available_backends("cpu")
    assert backend_class("torch").info.builds_engines is False
