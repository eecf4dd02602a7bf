"""Batch N (issue 21): bounded batch dims in the manifest, export, runners, engines, gates, calibration."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import TINY, randomize_bn

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.artifacts.schema import BatchDim
from parnet_deploy.backends import get_backend
from parnet_deploy.data import load_source
from parnet_deploy.data.batching import padded_batches
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.errors import ExportError, UserError
from parnet_deploy.export import ExportConfig, export_model, load_manifest
from parnet_deploy.precision.accuracy import evaluate
from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export

RES = (32, 32)


def _quiet(_):
    pass


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{"dynamic": 1..4 shared split (verified), "static3": batch 3 replicated, "one": batch 1}."""
    root = tmp_path_factory.mktemp("batch")
    torch_model = randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY), seed=3)
    made = {}
    for name, batch, split, verify in (("dynamic", (1, 4), "shared", True), ("static3", (3, 3), "replicated", True),
                                       ("one", (1, 1), "shared", False)):
        made[name] = export_model(torch_model, ExportConfig(output=root / "export", name=name, resolution=RES,
                                                            batch=batch, split=split, verify=verify), log=_quiet)
    return root, made


def _images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, *RES)).astype(np.float32)


def test_dynamic_export_bounds_every_tensor_and_is_verified_at_both_bounds(exports):
    _, made = exports
    d, m = made["dynamic"]
    assert m.batch == BatchDim(1, 4) and load_manifest(d) == m
    tensors = [t for s in (m.whole, *m.subgraphs) for t in (*s.inputs, *s.outputs)]
    assert len(tensors) > 10 and all(t.shape[0] == BatchDim(1, 4) for t in tensors)
    raw = json.loads((d / "manifest.json").read_text())
    assert raw["whole"]["inputs"][0]["shape"] == [{"min": 1, "max": 4}, 3, *RES]
    dim0 = onnx.load(d / "model.onnx").graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch"
    # 4 comparisons per sample (2 samples) at batch 1 and at batch 4, plus the rows check at 4
    assert m.verification["passed"] and m.verification["comparisons"] == 2 * 4 * 2 + 1
    s3 = made["static3"][1]
    assert s3.batch is None and s3.input.shape == (3, 3, *RES) and s3.output.shape == (3, 10)
    assert s3.verification["comparisons"] == 4 * 2 + 1


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_rows_of_a_batch_equal_batch_1(exports, backend, mode):
    _, made = exports
    x = _images(4, seed=1)
    with runtime.load(made["one"][0], backend=backend, mode=mode, threads=2) as one:
        alone = np.concatenate([one(x[k:k + 1]) for k in range(4)])
    with runtime.load(made["dynamic"][0], backend=backend, mode=mode, threads=2) as r:
        for n in (1, 2, 4):
            np.testing.assert_allclose(r(x[:n]), alone[:n], rtol=1e-5, atol=1e-5 * np.abs(alone).max())
        with pytest.raises(UserError, match=r"^export 'dynamic': batch 5 is outside the bounds 1\.\.4 "):
            r(_images(5))
        with pytest.raises(UserError, match="batch 0 is outside the bounds 1..4"):
            r(np.zeros((0, 3, *RES), np.float32))
        if backend == "openvino":  # one static model per batch called (faster than the bounded one)
            runners = [r.executor.runner] if mode == "whole" else list(r.executor.runners.values())
            assert all(sorted(run._by_batch) == [1, 2, 4] for run in runners)
    with runtime.load(made["static3"][0], backend=backend, mode=mode, threads=2) as r:
        np.testing.assert_allclose(r(x[:3]), alone[:3], rtol=1e-5, atol=1e-5 * np.abs(alone).max())
        with pytest.raises(UserError, match=r"shape must be \(3, 3, 32, 32\)"):
            r(x[:1])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_several_inputs_must_agree_on_the_batch(exports, backend):
    _, made = exports
    d, m = made["dynamic"]
    spec = m.subgraph("fusion")
    assert len(spec.inputs) == 3
    with get_backend(backend).load(d / spec.file, spec) as runner:
        feeds = {t.name: np.zeros(t.shape_at(2 if i == 0 else 3), np.float32) for i, t in enumerate(spec.inputs)}
        with pytest.raises(UserError, match=r"^fusion: the inputs disagree on the batch \(2 vs 3"):
            runner.infer(feeds)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_dynamic_engines_record_the_profile_and_run_any_batch(exports, backend):
    root, made = exports
    d = made["dynamic"][0]
    out, m = build_engines(d, BuildConfig(backend=backend, output=root / f"eng-{backend}", batch_opt=2,
                                          measure_iterations=2), log=_quiet)
    assert m.options.profile == (1, 2, 4)
    assert json.loads((out / "engines.json").read_text())["options"]["profile"] == {"min": 1, "opt": 2, "max": 4}
    x = _images(4, seed=2)
    with runtime.load(d, backend=backend, threads=2) as ref, runtime.load(out, threads=2) as r:
        np.testing.assert_allclose(r(x), ref(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r(x[:3]), ref(x)[:3], rtol=1e-5, atol=1e-6)
        with pytest.raises(UserError, match="batch 5 is outside the bounds 1..4"):
            r(_images(5))
    with pytest.raises(UserError, match=r"--batch-opt 7 is outside the export's batch bounds 1\.\.4"):
        build_engines(d, BuildConfig(backend=backend, output=root / "never", batch_opt=7), log=_quiet)
    with pytest.raises(UserError, match="--batch-opt applies to dynamic-batch exports"):
        build_engines(made["one"][0], BuildConfig(backend=backend, output=root / "never", batch_opt=1), log=_quiet)
    assert not (root / "never").exists() or not any((root / "never").iterdir())


def _set_shape(m, shape):
    m["whole"]["inputs"][0]["shape"] = shape


@pytest.mark.parametrize("shape, message", [
    ([{"min": 4, "max": 2}, 3, 32, 32], r"shape\[0\]: bounds 4\.\.2: min must be below max"),
    ([{"min": 2, "max": 2}, 3, 32, 32], r"shape\[0\]: bounds 2\.\.2: min must be below max"),
    ([{"min": 0, "max": 4}, 3, 32, 32], r"shape\[0\]\.min: expected an integer in \[1, 1024\]"),
    ([{"min": 1, "max": 4096}, 3, 32, 32], r"shape\[0\]\.max: expected an integer in \[1, 1024\]"),
    ([{"min": 1}, 3, 32, 32], r"shape\[0\]: expected exactly the keys min and max"),
    ([{"min": 1, "max": None}, 3, 32, 32], r"shape\[0\]\.max: expected an integer"),
    ([1, {"min": 1, "max": 4}, 32, 32], r"shape: expected a shape of 1\.\.8 dimensions"),
    ([{"min": 1, "max": 8}, 3, 32, 32], r"tensors disagree on the batch axis \(1\.\.4, 1\.\.8\)"),
    ([2, 3, 32, 32], r"tensors disagree on the batch axis \(1\.\.4, static\)"),
])
def test_the_schema_refuses_unbounded_inverted_or_mixed_bounds(exports, tmp_path, shape, message):
    _, made = exports
    d = tmp_path / "crafted"
    shutil.copytree(made["dynamic"][0], d)
    m = json.loads((d / "manifest.json").read_text())
    _set_shape(m, shape)
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportError, match=message):
        load_manifest(d)


def test_cli_batch_argument(exports, tmp_path):
    root, _ = exports
    ckpt = pd.save_checkpoint(pd.create_model("parnet_s", num_classes=10, **TINY), tmp_path / "m.pt")
    for bad, why in (("0", "1 <= MIN <= MAX"), ("5..2", "1 <= MIN <= MAX"), ("x", "expected N or MIN..MAX"),
                     ("1..2000", "<= 1024")):
        p = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.export", str(ckpt), "--batch", bad,
                            "--output", str(tmp_path / "out")], capture_output=True, text=True)
        assert p.returncode == 2 and why in p.stderr, p.stderr
    onnx_file = root / "export" / "one" / "model.onnx"
    p = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.export", str(onnx_file), "--batch", "2",
                        "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert p.returncode == 2 and "input 'image' has a static batch of 1; --batch needs dim 0 dynamic" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "out").exists()


def test_padded_batches_cover_every_row_once():
    a = np.arange(10)[:, None]
    got = list(padded_batches({"a": a}, (3, 4)))
    assert [rows for _, rows in got] == [4, 4, 2]
    assert [f["a"][:, 0].tolist() for f, _ in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9]]
    assert [len(f["a"]) for f, _ in padded_batches({"a": a}, (1, 8), size=1)] == [1] * 10


def test_batched_gates_and_calibration_give_the_batch_1_numbers(tmp_path):
    """The same model exported at batch 1 and at 1..16: minmax scales, fp32 and int8 top-1 identical."""
    torch_model = randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY), seed=5)
    heldout = load_source("digits:heldout")
    made = {}
    for name, batch in (("b1", (1, 1)), ("b16", (1, 16))):
        d, _ = export_model(torch_model, ExportConfig(output=tmp_path / "export", name=name, resolution=RES,
                                                      batch=batch, verify=False), log=_quiet)
        with runtime.load(d, threads=2) as r:
            made[name] = (d, evaluate(r, heldout, (1, 1) if name == "b1" else (1, 16)))
    np.testing.assert_array_equal(made["b1"][1].predictions, made["b16"][1].predictions)
    int8 = {name: quantize_export(d, QuantizeConfig(calib="digits", max_drop=100.0, output=tmp_path / "q"),
                                  log=_quiet)[1] for name, (d, _) in made.items()}
    assert int8["b16"].batch == BatchDim(1, 16)
    qa, qb = int8["b1"].quantization, int8["b16"].quantization
    assert (qa.top1_fp32, qa.top1_int8, qa.agreement) == (qb.top1_fp32, qb.top1_int8, qb.agreement)

    def scales(name):
        g = onnx.load(tmp_path / "q" / f"{name}-int8" / "model.onnx").graph
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
        return [inits[n.input[1]].tolist() for n in g.node if n.op_type == "QuantizeLinear"]

    assert len(scales("b1")) > 20 and scales("b1") == scales("b16")
