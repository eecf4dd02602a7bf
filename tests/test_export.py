import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import TINY, randomize_bn, rel_err

import parnet_deploy as pd
from parnet_deploy.errors import ExportError, ToolchainError, UserError
from parnet_deploy.export import ExportConfig, export_model, load_manifest
from parnet_deploy.export import graph as G
from parnet_deploy.export.opgate import check_tensorrt_ops, unsupported_ops

RES = (64, 64)


def _session(path_or_proto):
    data = path_or_proto.SerializeToString() if isinstance(path_or_proto, onnx.ModelProto) else str(path_or_proto)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY), seed=5)


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    """One export per (split, precision), made once for the module."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for split in ("replicated", "shared"):
        for precision in ("fp32", "fp16"):
            cfg = ExportConfig(output=root, name=f"{split}-{precision}", resolution=RES, split=split,
                               precision=precision)
            out[split, precision] = export_model(model, cfg, log=lambda _: None)
    return out


def test_whole_graph_equals_pytorch(model, exports):
    directory, manifest = exports["replicated", "fp32"]
    x = np.random.default_rng(1).standard_normal((1, 3, *RES)).astype(np.float32)
    got = _session(directory / "model.onnx").run(None, {"image": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert rel_err(got, ref) <= 1e-4
    assert manifest.verification["passed"] and manifest.verification["worst_max_rel"] <= 1e-4


@pytest.mark.parametrize("split, files", [
    ("replicated", ["stream0", "stream1", "stream2", "fusion"]),
    ("shared", ["stem", "stream0", "stream1", "stream2", "fusion"]),
])
def test_composed_subgraphs_equal_whole_graph(exports, split, files):
    directory, manifest = exports[split, "fp32"]
    assert [s.name for s in manifest.subgraphs] == files
    x = np.random.default_rng(2).standard_normal((1, 3, *RES)).astype(np.float32)
    values = {"image": x}
    for sub in manifest.subgraphs:  # in execution order; names connect the pieces
        sess = _session(directory / sub.file)
        outs = sess.run(None, {t.name: values[t.name] for t in sub.inputs})
        values.update(zip([t.name for t in sub.outputs], outs))
    whole = _session(directory / "model.onnx").run(None, {"image": x})[0]
    assert rel_err(values["logits"], whole) <= 1e-5


def test_manifest_records_the_dag_and_config(exports):
    directory, _ = exports["shared", "fp32"]
    raw = json.loads((directory / "manifest.json").read_text())
    assert raw["schema"] == "parnet-deploy/export" and raw["schema_version"] == 3
    assert raw["model"]["family"] == "parnet" and raw["model"]["act"] == "relu"
    assert raw["model"]["planes"] == [16, 32, 64, 96] and "resolution" not in raw
    note = "x = (rgb / 255 - mean) / std, applied by the caller; not part of the graph"
    assert raw["normalization"] == [{"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                     "layout": "NCHW RGB", "input": "image", "note": note}]
    assert raw["partition"] is None and raw["split"] == "shared" and raw["opset"] == 18
    dag = {e["tensor"]: (e["producer"], e["consumers"]) for e in raw["dag"]}
    assert dag["image"] == ("input", ["stem"])
    assert dag["x1"] == ("stem", ["stream1"])
    assert dag["y2"] == ("stream2", ["fusion"])
    assert set(raw["files"]) == {"model.onnx", "stem.onnx", "stream0.onnx", "stream1.onnx", "stream2.onnx",
                                 "fusion.onnx", "reference.npz", "deploy.safetensors"}
    assert raw["torch_weights"] == "deploy.safetensors"
    assert [(s["name"], s["stream"]) for s in raw["subgraphs"]] == [
        ("stem", None), ("stream0", 0), ("stream1", 1), ("stream2", 2), ("fusion", None)]
    fusion = next(s for s in raw["subgraphs"] if s["name"] == "fusion")
    assert [t["name"] for t in fusion["inputs"]] == ["y0", "y1", "y2"]
    # y0 leaves stream 0 through its downsample, at stream 1's shape (ParNet.stream_output)
    assert [t["shape"] for t in fusion["inputs"]] == [[1, 32, 8, 8], [1, 32, 8, 8], [1, 64, 4, 4]]
    assert fusion["outputs"][0]["shape"] == [1, 10]
    for key in ("parnet_deploy", "torch", "onnx"):
        assert raw["versions"][key]


def test_tampered_or_missing_file_is_refused(exports, tmp_path):
    import shutil

    src, _ = exports["replicated", "fp32"]
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    load_manifest(d)  # intact
    with open(d / "stream1.onnx", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ExportError, match="stream1.onnx does not match its sha256"):
        load_manifest(d)
    shutil.copy(src / "stream1.onnx", d / "stream1.onnx")
    (d / "fusion.onnx").unlink()
    with pytest.raises(ExportError, match="fusion.onnx is missing"):
        load_manifest(d)
    (d / "manifest.json").unlink()
    with pytest.raises(ExportError, match="no manifest.json"):
        load_manifest(d)


def test_fp16_export_is_within_tolerance(model, exports):
    directory, manifest = exports["replicated", "fp16"]
    whole = onnx.load(directory / "model.onnx")
    assert whole.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert whole.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in whole.graph.initializer)
    assert manifest.subgraph("fusion").inputs[0].dtype == "float16"  # streams hand over fp16 tensors
    x = np.random.default_rng(3).standard_normal((1, 3, *RES)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert rel_err(_session(directory / "model.onnx").run(None, {"image": x})[0], ref) <= 1e-2
    assert manifest.verification["passed"]


def test_deploy_form_exports_fewer_nodes_than_official_fuse(model):
    ours = G.torch_to_onnx(pd.reparameterize(model), RES)
    official = G.torch_to_onnx(pd.official_fuse(model), RES)
    assert G.count_nodes(ours) < G.count_nodes(official)
    # every pooled-side identity BN was folded into its SE conv: only main-path BNs remain
    n_identity = sum(1 for m in model.modules() if getattr(m, "rbr_identity", None) is not None)
    assert sum(n.op_type == "BatchNormalization" for n in ours.graph.node) == n_identity
    # SE pools are GlobalAveragePool (quantizable); only the classifier's pool stays a ReduceMean
    assert sum(n.op_type == "GlobalAveragePool" for n in ours.graph.node) >= 20
    assert sum(n.op_type == "ReduceMean" for n in ours.graph.node) == 1


def test_op_gate_rejects_unsupported_ops():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Det", ["x"], ["y"])], "g", [x], [y])
    bad = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    assert unsupported_ops(bad) == ["Det"]
    with pytest.raises(ToolchainError, match="ops not supported by TensorRT's ONNX parser: Det"):
        check_tensorrt_ops(bad, "bad.onnx")


def test_existing_export_is_kept_without_force(model, tmp_path):
    cfg = ExportConfig(output=tmp_path, name="m", resolution=RES, verify=False)
    export_model(model, cfg, log=lambda _: None)
    before = (tmp_path / "m" / "manifest.json").read_text()
    with pytest.raises(UserError, match="already exists"):
        export_model(model, cfg, log=lambda _: None)
    assert (tmp_path / "m" / "manifest.json").read_text() == before


def test_failure_midway_leaves_nothing_behind(model, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(G, "cut", boom)
    with pytest.raises(KeyboardInterrupt):
        export_model(model, ExportConfig(output=tmp_path, name="m", resolution=RES), log=lambda _: None)
    assert os.listdir(tmp_path) == []


def test_bad_resolution(model, tmp_path):
    with pytest.raises(UserError, match="bad resolution 64x48"):
        export_model(model, ExportConfig(output=tmp_path, resolution=(64, 48)), log=lambda _: None)


# -- the command line -------------------------------------------------------------------
def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "parnet_deploy.cli.export", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def test_cli_exports_and_reports(tmp_path, model):
    ckpt = pd.save_checkpoint(model, tmp_path / "tiny.pt")
    r = _cli(ckpt, "--resolution", "64", "--name", "tiny", "--split", "shared", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "PASSED" in r.stdout and "FAILED" not in r.stdout and "[7/7] write manifest.json" in r.stdout
    assert load_manifest(tmp_path / "export" / "tiny").split == "shared"
    r = _cli(ckpt, "--resolution", "64", "--name", "tiny", cwd=tmp_path)
    assert r.returncode == 2 and "already exists (use --force" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["missing.pt"], "checkpoint not found: missing.pt"),
    (["CKPT", "--resolution", "50"], "bad resolution 50x50"),
    (["CKPT", "--resolution", "abc"], "expected 224 or HxW"),
    (["CKPT", "--arch", "parnet_q"], "unknown model 'parnet_q'"),
    (["CKPT", "--opset", "11"], "opset 11 not supported"),
    (["CKPT", "--output", "/proc/nope"], "cannot write to /proc/nope"),
])
def test_cli_user_errors_exit_2_without_traceback(tmp_path, model, args, message):
    ckpt = pd.save_checkpoint(model, tmp_path / "tiny.pt")
    r = _cli(*[str(ckpt) if a == "CKPT" else a for a in args], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "export").exists() or os.listdir(tmp_path / "export") == []
