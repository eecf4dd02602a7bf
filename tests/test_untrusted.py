"""Untrusted input: crafted manifests, engines.json, checkpoints and CLI arguments are refused with one
line (exit 2), nothing is written outside the output folder, and artifact folders are written safely."""

import dataclasses
import json
import os
import re
import shutil
import stat

import pytest
import torch

import parnet_deploy as pd
from parnet_deploy.artifacts import Dag, atomic_directory, load_manifest
from parnet_deploy.artifacts.export_manifest import SubgraphSpec, TensorSpec
from parnet_deploy.errors import ExportError, UserError
from parnet_deploy.export import ExportConfig, export_model


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32))
    d, _ = export_model(model, ExportConfig(output=tmp_path_factory.mktemp("art"), name="m", split="shared",
                                            verify=False), log=lambda _: None)
    return d


def _edited(export_dir, tmp_path, fn):
    d = tmp_path / "m"
    shutil.copytree(export_dir, d)
    raw = json.loads((d / "manifest.json").read_text())
    fn(raw)
    (d / "manifest.json").write_text(json.dumps(raw))
    return d


def _spec(name, ins, outs, stream=None):
    return SubgraphSpec(name, f"{name}.onnx", tuple(TensorSpec(t, (1,), "float32") for t in ins),
                        tuple(TensorSpec(t, (1,), "float32") for t in outs), stream)


def test_manifest_is_typed_and_the_dag_is_one_object(export_dir):
    m = load_manifest(export_dir)
    assert m.model.planes == (8, 16, 32, 32) and m.normalization.std[0] == pytest.approx(0.229)
    assert m.family == "parnet" and m.normalization.input == "image" and m.resolution == (32, 32)
    assert [s.stream for s in m.subgraphs] == [None, 0, 1, 2, None]
    assert m.dag.producer("x1") == "stem" and m.dag.producer("image") == "input"
    assert m.dag.consumers("y2") == ("fusion",) and m.dag.predecessors("fusion") == ("stream0", "stream1", "stream2")
    assert m.dag.levels() == (("stem",), ("stream0", "stream1", "stream2"), ("fusion",)) and m.dag.width == 3
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'name'"):
        m.name = "other"


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(files=[]), r"manifest.json.files: expected an object"),
    (lambda r: r.update(subgraphs=[]), "the DAG has no subgraphs"),
    (lambda r: r.update(name="../victim"), r"\.name: '\.\./victim' is not a valid name"),
    (lambda r: r["subgraphs"][1].update(file="/etc/passwd"), r"subgraphs\[1\]\.file: '/etc/passwd' is not a valid"),
    (lambda r: r["files"].pop("stream1.onnx"), r"no entry for the subgraph files \['stream1.onnx'\]"),
    (lambda r: r["whole"]["inputs"][0].update(shape=[1, 3, 10 ** 9, 32]), r"whole.inputs\[0\].shape: expected a shape"),
    (lambda r: r["whole"]["inputs"][0].update(shape=[1, 3, -32, 32]), r"whole.inputs\[0\].shape: expected a shape"),
    (lambda r: r["subgraphs"].reverse(), "which no earlier subgraph produces"),
    (lambda r: r.update(precision="int4"), r"\.precision: expected one of"),
    (lambda r: r["model"].update(planes=[10 ** 6] * 4), r"planes must be 4 ints in 1..8192"),
    (lambda r: r["normalization"][0].update(std=[1e39, 1, 1]), r"mean and std must be finite float32"),
    (lambda r: r["normalization"][0].update(std=[1, 1]), r"normalization\[0\]\.std: expected 3 numbers"),
    (lambda r: r["normalization"][0].update(input="other"), r"normalization\[0\]\.input: 'other' is not an input"),
    (lambda r: r["normalization"].append(r["normalization"][0]), r"'image' is normalized twice"),
    (lambda r: r["normalization"][0].update(mean=[0.5], std=[1.0]),
     r"normalization\[0\]: normalization of 'image' has 1 channels; the input is \[1, 3, 32, 32\]"),
    (lambda r: r["model"].update(family="keras"), r"model\.family: expected one of \('parnet', 'onnx'\)"),
    (lambda r: r["model"].pop("family"), r"model\.family: missing"),
    (lambda r: r["whole"]["inputs"][0].update(dtype="complex64"), r"whole\.inputs\[0\]\.dtype: expected one of"),
    (lambda r: r.update(partition={"devices": 0, "subgraphs": []}),
     r"partition\.devices: expected an integer in \[1, 64\]"),
    (lambda r: r["subgraphs"][-1]["inputs"].append(r["subgraphs"][-1]["inputs"][0]), r"a tensor is listed twice"),
])
def test_bad_manifests_are_refused_with_the_field(export_dir, tmp_path, edit, message):
    d = _edited(export_dir, tmp_path, edit)
    with pytest.raises(ExportError, match=message):
        load_manifest(d)


def test_deeply_nested_and_huge_manifests(export_dir, tmp_path):
    d = tmp_path / "deep"
    shutil.copytree(export_dir, d)
    (d / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ExportError, match="malformed manifest"):
        load_manifest(d)
    with open(d / "manifest.json", "wb") as f:
        f.truncate(5 << 20)
    with pytest.raises(ExportError, match="too large for a manifest"):
        load_manifest(d)


def test_size_is_checked_before_the_hash_and_links_must_stay_inside(export_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(export_dir, d)
    with open(d / "stream0.onnx", "r+b") as f:
        f.truncate(50 << 30)  # sparse: hashing it would take minutes
    with pytest.raises(ExportError, match=r"stream0.onnx has 53687091200 bytes, manifest.json records"):
        load_manifest(d)
    outside = tmp_path / "outside.onnx"
    shutil.copy(export_dir / "stream0.onnx", outside)
    (d / "stream0.onnx").unlink()
    os.symlink(outside, d / "stream0.onnx")
    with pytest.raises(ExportError, match="points outside the directory"):
        load_manifest(d)


def test_dag_rejects_cycles_and_dead_ends():
    with pytest.raises(ExportError, match="no earlier subgraph produces"):
        Dag((_spec("a", ["b_out"], ["a_out"]), _spec("b", ["a_out"], ["b_out"])), ("image",), ("a_out",))
    with pytest.raises(ExportError, match="feed nothing"):
        Dag((_spec("a", ["image"], ["a_out"]), _spec("b", ["image"], ["b_out"])), ("image",), ("a_out",))
    with pytest.raises(ExportError, match="produced twice"):
        Dag((_spec("a", ["image"], ["t"]), _spec("b", ["image"], ["t"])), ("image",), ("t",))


def test_force_replaces_only_our_own_artifacts(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a parnet-deploy artifact"):
        with atomic_directory(victim, force=True) as tmp:
            (tmp / "manifest.json").write_text("{}")
    assert (victim / "precious.txt").read_text() == "keep me"
    ours = tmp_path / "ours"
    with atomic_directory(ours) as tmp:
        (tmp / "manifest.json").write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(ours.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    with atomic_directory(ours, force=True) as tmp:
        (tmp / "manifest.json").write_text("[]")
    assert (ours / "manifest.json").read_text() == "[]"


def test_leftovers_of_a_killed_run_are_cleaned_up(tmp_path):
    dead = tmp_path / ".out.tmp-999999999-abc"  # no such pid
    dead.mkdir()
    alive = tmp_path / f".out.tmp-{os.getpid()}-abc"
    alive.mkdir()
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not dead.exists() and alive.exists()


# -- through the command lines: exit 2, one line, nothing touched outside the output ---------------
def _cli(module, *args, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", f"parnet_deploy.cli.{module}", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def _snapshot(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(name="../canary"), "is not a valid name"),
    (lambda r: r.update(name=None), r"\.name: expected a string"),
    (lambda r: r["subgraphs"][0].update(name="/tmp/x"), "is not a valid name"),
    (lambda r: r["files"].update({"../canary/keep.txt": {"sha256": "0" * 64, "bytes": 1}}),
     "expected at most 1 path components"),
])
def test_crafted_export_cannot_touch_anything_outside(export_dir, tmp_path, edit, message):
    d = _edited(export_dir, tmp_path, edit)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("keep")
    before = _snapshot(tmp_path / "canary")
    r = _cli("build", d, "--output", tmp_path / "engines", "--force", cwd=tmp_path)
    assert r.returncode == 2 and re.search(message, r.stderr), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert _snapshot(canary) == before and not (tmp_path / "engines").exists()


@pytest.fixture(scope="module")
def engine_dir(export_dir, tmp_path_factory):
    from parnet_deploy.engines.build import BuildConfig, build_engines

    d, _ = build_engines(export_dir, BuildConfig(backend="onnxruntime", output=tmp_path_factory.mktemp("eng")),
                         log=lambda _: None)
    return d


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["placement"].update(stem="../outside"), r"placement: 'stem' -> '\.\./outside'"),
    (lambda r: r["devices"]["cpu"].update(kind="tpu"), r"devices.cpu.kind: expected one of"),
    (lambda r: r["backend"].update(name="tvm"), "unknown backend 'tvm'"),
    (lambda r: r["engines"]["cpu"].update(stem="../../etc/passwd"), r"engines.cpu.stem: .* is not a valid name"),
    (lambda r: r.update(files=[]), r"files: expected an object"),
    (lambda r: r["files"].pop("cpu/stream1.ort.onnx"), r"no entry for the engine files \['cpu/stream1.ort.onnx'\]"),
    (lambda r: r.update(precision="bf16"), r"precision: 'bf16' does not fit options.precision 'fp32'"),
    (lambda r: r["export"].update(precision="fp16"), r"precision: 'fp32' does not fit .* the export's 'fp16'"),
])
def test_crafted_engines_json_is_refused(engine_dir, tmp_path, edit, message):
    d = tmp_path / "e"
    shutil.copytree(engine_dir, d)
    raw = json.loads((d / "engines.json").read_text())
    edit(raw)
    (d / "engines.json").write_text(json.dumps(raw))
    r = _cli("bench", "--engine", d, "--iterations", "1", "--duration", "0", "--warmup", "0", cwd=tmp_path)
    assert r.returncode == 2 and re.search(message, r.stderr), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unlisted_external_data_is_refused(export_dir, tmp_path):
    import hashlib

    import onnx

    d = tmp_path / "m"
    shutil.copytree(export_dir, d)
    model = onnx.load(d / "fusion.onnx")
    onnx.save(model, d / "fusion.onnx", save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)
    raw = json.loads((d / "manifest.json").read_text())
    data = (d / "fusion.onnx").read_bytes()
    raw["files"]["fusion.onnx"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (d / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ExportError, match=r"fusion.onnx reads external data \['w.bin'\] that manifest.json does not"):
        load_manifest(d)
    w = (d / "w.bin").read_bytes()
    raw["files"]["w.bin"] = {"sha256": hashlib.sha256(w).hexdigest(), "bytes": len(w)}
    (d / "manifest.json").write_text(json.dumps(raw))
    load_manifest(d)  # listed and hashed: fine


def test_zip_bomb_checkpoint_is_refused_with_little_memory(tmp_path):
    import subprocess
    import sys
    import zipfile

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            chunk = bytes(16 << 20)
            for _ in range(128):  # 2 GiB of zeros in a file of a few MB
                f.write(chunk)
    # peak RSS of this process image: VmHWM (ru_maxrss would carry over the forking parent's peak on Linux)
    code = ("import sys\nfrom parnet_deploy.checkpoint import load_checkpoint\n"
            "try:\n    load_checkpoint(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('maxrss_kib', hwm)")
    r = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True)
    assert "CheckpointError" in r.stdout and "inflate to 2147483648 bytes" in r.stdout, r.stdout + r.stderr
    rss_mib = int(r.stdout.split("maxrss_kib")[1]) / 1024
    assert rss_mib < 1024, rss_mib  # the process never came near the 2 GiB member


@pytest.mark.parametrize("module, args, message", [
    ("export", ["ckpt.pt", "--resolution", "100000"], "sides in 1..4096"),
    ("train", ["--planes", "100000,100000,100000,100000"], "expected 4 widths in 1..8192"),
    ("train", ["--output", "."], "is a directory"),
    ("bench", ["--engine", "x", "--duration", "nan"], "finite number of seconds"),
    ("quantize", ["x", "--calib", "digits", "--name", "../x"], "bad name '../x'"),
])
def test_bad_cli_arguments_fail_before_any_work(tmp_path, module, args, message):
    r = _cli(module, *args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_force_never_replaces_the_input_or_another_kind(export_dir, engine_dir, tmp_path):
    from parnet_deploy.engines.build import BuildConfig, build_engines

    root = export_dir.parent
    before = _snapshot(export_dir)
    with pytest.raises(UserError, match="is the input"):  # parnet-build --output export --force
        build_engines(export_dir, BuildConfig(backend="onnxruntime", output=root, force=True), log=lambda _: None)
    with pytest.raises(UserError, match="not a parnet-deploy artifact of this kind \\(no engines.json\\)"):
        d = tmp_path / "x"
        shutil.copytree(export_dir, d / "m")
        build_engines(export_dir, BuildConfig(backend="onnxruntime", output=d, force=True), log=lambda _: None)
    r = _cli("quantize", export_dir, "--calib", "digits", "--name", "m", "--output", root, "--force", cwd=tmp_path)
    assert r.returncode == 2 and "is the input" in r.stderr
    r = _cli("quantize", export_dir, "--calib", "digits", "--name", engine_dir.name, "--output", engine_dir.parent,
             "--force", cwd=tmp_path)
    assert r.returncode == 2 and "(no manifest.json)" in r.stderr
    assert _snapshot(export_dir) == before and (engine_dir / "engines.json").is_file()


def test_bad_data_and_ignored_flags_are_refused(export_dir, tmp_path):
    import numpy as np

    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 3, 32, 32), np.float32), labels=np.zeros(0, np.int64))
    np.savez(tmp_path / "nan.npz", images=np.full((2, 3, 32, 32), np.nan, np.float32))
    for data, message in (("empty.npz", "no images"), ("nan.npz", "NaN or inf")):
        r = _cli("quantize", export_dir, "--calib", data, "--output", tmp_path / "q", cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _cli("build", export_dir, "--calib", "digits", "--output", tmp_path / "e", cwd=tmp_path)
    assert r.returncode == 2 and "--calib only applies with --precision int8" in r.stderr
    r = _cli("bench", "--engine", export_dir, "--precision", "bf16", "--backend", "onnxruntime", cwd=tmp_path)
    assert r.returncode == 2 and "onnxruntime runs" in r.stderr
    assert not (tmp_path / "e").exists() and not (tmp_path / "q" / "m-int8").exists()


@pytest.mark.parametrize("version", [1, 2, 4])
def test_other_schema_versions_are_refused_with_re_export(export_dir, tmp_path, version):
    d = _edited(export_dir, tmp_path, lambda r: r.update(schema_version=version))
    message = rf"schema version {version} is not supported.*re-export it with parnet-export"
    with pytest.raises(ExportError, match=message):
        load_manifest(d)
