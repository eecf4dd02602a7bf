import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import rel_err

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.data import load_source
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.errors import UserError, VerificationError
from parnet_deploy.export import ExportConfig, export_model, load_manifest
from parnet_deploy.precision.accuracy import evaluate
from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export
from parnet_deploy.train import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A seconds-long version of parnet-train (the full one reaches ~99%)."""
    root = tmp_path_factory.mktemp("prec")
    model, acc = train(TrainConfig(planes=(16, 32, 64, 64), epochs=5, threads=2), log=lambda _: None)
    ckpt = pd.save_checkpoint(model, root / "digits.pt")
    d, _ = export_model(model, ExportConfig(output=root / "export", name="digits", split="shared", verify=False),
                        log=lambda _: None)
    return root, model, acc, ckpt, d


def test_quick_training_is_well_above_chance(trained):
    _, model, acc, _, _ = trained
    assert acc >= 0.5  # chance is 10%
    assert model.config.num_classes == 10 and model.config.small_input


def test_digits_split_is_fixed():
    tr, te = load_source("digits:train"), load_source("digits:heldout")
    assert (len(tr), len(te)) == (1437, 360) and tr.images.shape[1:] == (3, 32, 32)
    assert np.array_equal(load_source("digits:heldout").labels, te.labels)
    assert sorted(np.bincount(te.labels))[0] >= 35  # stratified


@pytest.fixture(scope="module")
def int8_export(trained):
    root, _, _, _, d = trained
    return quantize_export(d, QuantizeConfig(calib="digits", output=root / "export"), log=lambda _: None)


def test_quantize_writes_one_symmetric_int8_export(trained, int8_export):
    _, _, _, _, d = trained
    out, manifest = int8_export
    assert out.name == "digits-int8" and manifest.precision == "int8" and load_manifest(out) == manifest
    q = manifest.quantization
    assert q.drop_points <= 1.0 and q.method == "minmax" and q.calibration == "digits:train"
    assert q.evaluation == "digits:heldout" and q.source == "digits"
    assert q.source_sha256 == load_manifest(d).files["model.onnx"].sha256
    # three flavors of one calibration; OpenVINO's own files cross every cut as uint8 (y1 and y2 because the
    # Fusion's Concat -> Reshape carries them into a quantizer), the others in float
    assert q.flavor == "openvino" and [f.name for f in q.flavors] == ["onnxruntime", "tensorrt"]
    assert {t.name for s in manifest.subgraphs for t in s.outputs if t.dtype == "uint8"} == {
        "x0", "x1", "x2", "y0", "y1", "y2"}
    for backend in ("onnxruntime", "tensorrt"):
        flavor = manifest.for_backend(backend)
        assert flavor.whole.file == f"model.{backend}.onnx"
        assert all(t.dtype == "float32" for s in flavor.subgraphs for t in (*s.inputs, *s.outputs))
    assert manifest.verification["flavor_gates"]["tensorrt"]["drop_points"] <= 1.0
    specs = [(b, s) for b in ("openvino", "onnxruntime", "tensorrt") for s in (manifest.for_backend(b).whole,
                                                                               *manifest.for_backend(b).subgraphs)]
    assert len({s.file for _, s in specs}) == 18 and set(manifest.files) >= {s.file for _, s in specs}
    for backend, spec in specs:
        g = onnx.load(out / spec.file).graph
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
        ops = [n.op_type for n in g.node]
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops, spec.name
        # TensorRT: zero points 0, int8 only (no quantized biases: no int32 DequantizeLinear)
        dq_inputs = [inits[n.input[0]] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
        assert all(a.dtype == np.int8 for a in dq_inputs), spec.name
        zps = [inits[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
        if backend == "openvino":  # uint8 activations; ONNX Runtime's (run as uint8) and TensorRT's: int8, zero 0
            assert zps and all(z.dtype == np.uint8 for z in zps), spec.name
        else:
            assert zps and all(z.dtype == np.int8 and not z.any() for z in zps), spec.name


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_export_keeps_accuracy_on_every_backend(trained, int8_export, backend):
    _, _, _, _, d = trained
    out, manifest = int8_export
    heldout = load_source("digits:heldout")
    fp32 = evaluate(runtime.load(d), heldout)
    for mode in ("whole", "streams"):
        with runtime.load(out, backend=backend, mode=mode) as run:
            int8 = evaluate(run, heldout)
        assert (fp32.top1 - int8.top1) * 100 <= 1.0, (backend, mode)
    if backend == "onnxruntime":  # the backend that ran the gate measured the same on this flavor's graph
        assert int8.top1 == pytest.approx(manifest.verification["flavor_gates"]["onnxruntime"]["top1_int8"])


def test_quantized_cuts_match_the_whole_graph(trained, int8_export):
    """The OpenVINO flavor's uint8 cuts, against one whole-graph reference: through the distributed executor
    (gloo: uint8 on the wire) and, on 2 threads, handed from request to request inside OpenVINO (chain.py);
    the same predictions as the whole graph on every held-out image."""
    from parnet_deploy.backends.openvino.chain import ChainedStreamsExecutor

    out, _ = int8_export
    heldout = load_source("digits:heldout")
    with runtime.load(out, backend="openvino") as whole:
        reference = evaluate(whole, heldout)
    with runtime.load(out, backend="openvino", mode="distributed", timeout_s=30) as run:
        assert evaluate(run, heldout).agreement(reference) == 1.0
    with runtime.load(out, backend="openvino", mode="streams", threads=2) as run:
        assert isinstance(run.executor, ChainedStreamsExecutor)
        assert evaluate(run, heldout).agreement(reference) == 1.0


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_engines_pass_the_gate_on_their_backend(trained, int8_export, backend):
    root, _, _, _, _ = trained
    out, _ = int8_export
    d, m = build_engines(out, BuildConfig(backend=backend, output=root / f"e-{backend}", eval_source="digits:heldout",
                                          measure_iterations=2), log=lambda _: None)
    assert d.name == "digits-int8" and m.precision == "int8" and m.backend.name == backend
    assert m.accuracy.data == "digits:heldout" and m.accuracy.drop_points <= 1.0
    with runtime.load(d, mode="streams") as run:
        assert evaluate(run, load_source("digits:heldout")).top1 == pytest.approx(m.accuracy.top1)


def test_int8_build_from_fp32_with_calib(trained, tmp_path):
    _, _, _, _, d = trained
    out, m = build_engines(d, BuildConfig(output=tmp_path, precision="int8", calib="digits", measure_iterations=2),
                           log=lambda _: None)
    assert out.name == "digits-int8" and m.precision == "int8" and m.export.quantization is not None
    assert len(m.selection) == 2 and sum(t.chosen for t in m.selection) == 1  # auto: both CPU backends measured
    assert m.accuracy.drop_points <= 1.0


def test_bf16_is_gated_and_needs_native_bf16(trained, tmp_path, monkeypatch):
    from parnet_deploy.engines import build as B

    _, _, _, _, d = trained
    if not B.native_bf16():
        pytest.skip("this CPU has no native bf16")
    out, m = build_engines(d, BuildConfig(output=tmp_path, precision="bf16", eval_source="digits",
                                          measure_iterations=2), log=lambda _: None)
    assert out.name == "digits-bf16" and m.precision == "bf16" and m.backend.name == "openvino"
    assert m.accuracy.drop_points <= 1.0 and m.accuracy.agreement >= 0.98
    with runtime.load(out) as run:
        x = load_source("digits:heldout").images[:1]
        assert run.backend.describe()["inference_precision"] == "bf16"
        assert rel_err(run(x), runtime.load(d)(x)) <= 5e-2
    with pytest.raises(UserError, match="accuracy-gated"):
        build_engines(d, BuildConfig(output=tmp_path, precision="bf16", force=True), log=lambda _: None)
    monkeypatch.setattr(B, "native_bf16", lambda: False)
    with pytest.raises(UserError, match="native bf16"):
        build_engines(d, BuildConfig(output=tmp_path, precision="bf16", eval_source="digits", force=True),
                      log=lambda _: None)


def test_broken_calibration_fails_loudly_and_writes_nothing(trained, tmp_path):
    _, _, _, _, d = trained
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=load_source("digits:train").images[:64] * 0.01)  # ranges 100x too small: clipping
    with pytest.raises(VerificationError, match="int8 accuracy drop too large at every quantization level"):
        quantize_export(d, QuantizeConfig(calib=str(bad), eval_source="digits:heldout", output=tmp_path),
                        log=lambda _: None)
    assert list(tmp_path.iterdir()) == [bad]


def test_int8_needs_calibration(trained, tmp_path):
    _, _, _, _, d = trained
    with pytest.raises(UserError, match=r"needs an int8 export \(parnet-quantize\), or an fp32 export and --calib"):
        build_engines(d, BuildConfig(output=tmp_path, precision="int8"), log=lambda _: None)


def test_eval_cli_reports_every_stage(trained):
    root, _, _, ckpt, _ = trained
    out = root / "acc.json"
    r = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.eval", str(ckpt), "--data", "digits",
                        "--calib", "digits", "--json", str(out)], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr
    acc = json.loads(out.read_text())["accuracy"]
    expected = {"torch train form", "torch deploy form", "onnxruntime fp32 whole", "onnxruntime fp32 streams",
                "onnxruntime fp16 whole", "onnxruntime int8 (Q/DQ) whole", "openvino fp32 whole",
                "openvino int8 (Q/DQ) whole"}
    from parnet_deploy.hardware import native_bf16

    assert set(acc) == expected | ({"openvino bf16 whole"} if native_bf16() else set())
    base = acc["torch train form"]["top1"]
    for stage in ("torch deploy form", "onnxruntime fp32 whole", "onnxruntime fp32 streams"):
        assert acc[stage]["top1"] == base and acc[stage]["agreement_with_fp32"] == 1.0
    assert acc["onnxruntime fp16 whole"]["agreement_with_fp32"] >= 0.99
    assert acc["openvino fp32 whole"]["agreement_with_fp32"] == 1.0
    for stage in ("onnxruntime int8 (Q/DQ) whole", "openvino int8 (Q/DQ) whole"):
        assert base - acc[stage]["top1"] <= 0.01


def test_train_cli_checks_its_output_before_training(tmp_path):
    r = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.train", "--output", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is a directory" in r.stderr and "epoch" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.train", "--planes", "100000,1,1,1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "expected 4 widths in 1..8192" in r.stderr


def test_train_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.train", "--output", str(tmp_path / "t.pt"),
                        "--planes", "8,16,32,32", "--epochs", "1", "--min-accuracy", "0.99"],
                       capture_output=True, text=True)
    # one epoch of a tiny model does not reach 99%: the checkpoint is saved, the exit code says so
    assert r.returncode == 1 and "below --min-accuracy" in r.stderr and (tmp_path / "t.pt").is_file()
