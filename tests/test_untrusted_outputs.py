"""Outputs never destroy what is already there (a folder that appears during a run, a concurrent export,
the command's own input), and manifests are read as strictly as the C library reads them."""

import os
import stat
import subprocess
import sys

import pytest
import torch
from crafted_manifests import CRAFTED

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.artifacts import atomic_directory, files, load_manifest
from parnet_deploy.artifacts.files import write_json
from parnet_deploy.checkpoint import save_checkpoint
from parnet_deploy.errors import ExportError, UserError
from parnet_deploy.export import ExportConfig, export_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)), path)
    return path


@pytest.fixture(scope="module")
def export_dir(checkpoint, tmp_path_factory):
    from parnet_deploy.checkpoint import load_checkpoint

    d, _ = export_model(load_checkpoint(checkpoint), ExportConfig(output=tmp_path_factory.mktemp("art"), name="m",
                                                                  split="shared", verify=False), log=lambda _: None)
    return d


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(params=["renameat2", "mkdir"])
def publish(request, monkeypatch):
    """Both ways of publishing: renameat2 (Linux), and mkdir + rename where a filesystem lacks it."""
    if request.param == "mkdir":
        def unsupported(*_):
            raise OSError(38, "not implemented")  # ENOSYS
        monkeypatch.setattr(files, "_renameat2", unsupported)
    return request.param


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_that_appears_during_the_run_is_never_replaced(tmp_path, publish, force):
    target = tmp_path / "race" / "z"
    with pytest.raises(UserError, match="appeared while this command ran|not a parnet-deploy artifact"):
        with atomic_directory(target, force=force) as tmp:
            (tmp / "manifest.json").write_text("{}")
            target.mkdir(parents=True)
            (target / "notes.txt").write_text("precious")
    assert _tree(target) == {"notes.txt": b"precious"}
    assert [p.name for p in target.parent.iterdir()] == ["z"]  # no temporary left behind


def test_a_concurrent_artifact_of_ours_is_replaced_only_with_force(tmp_path, publish):
    target = tmp_path / "z"
    with pytest.raises(UserError, match="appeared while this command ran"):
        with atomic_directory(target) as first:
            (first / "manifest.json").write_text("first")
            with atomic_directory(target) as second:
                (second / "manifest.json").write_text("second")
    assert _tree(target) == {"manifest.json": b"second"}
    with atomic_directory(target, force=True) as third:
        (third / "manifest.json").write_text("third")
    assert _tree(target) == {"manifest.json": b"third"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z"]


def test_two_concurrent_exports_one_wins_the_other_refuses_in_one_line(tmp_path, checkpoint):
    cmd = [sys.executable, "-m", "parnet_deploy.cli.export", str(checkpoint), "--output", str(tmp_path / "race"),
           "--name", "z", "--no-verify"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert len(loser.strip().splitlines()) == 1 and "z" in loser, loser
    assert load_manifest(tmp_path / "race" / "z").name == "z"
    assert sorted(p.name for p in (tmp_path / "race").iterdir()) == ["z"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600)


def test_bench_never_writes_inside_what_it_reads(export_dir, checkpoint):
    before = _tree(export_dir)
    for flag, name in (("--json", "manifest.json"), ("--json", "new.json"), ("--plot", "p.png")):
        r = _cli("parnet_deploy.cli.bench", "--engine", str(export_dir), flag, str(export_dir / name))
        assert r.returncode == 2 and "which this command reads" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = _cli("parnet_deploy.cli.bench", "--compare", str(checkpoint), "--json", str(checkpoint.with_suffix(".json")),
             "--plot", str(checkpoint))
    assert r.returncode == 2 and "which this command reads" in r.stderr
    assert _tree(export_dir) == before


def test_export_output_that_is_a_file_is_refused_before_loading(tmp_path, checkpoint, monkeypatch):
    from parnet_deploy.cli import export

    def boom(*_, **__):
        raise AssertionError("loaded the checkpoint first")
    monkeypatch.setattr("parnet_deploy.checkpoint.load_checkpoint", boom)
    with pytest.raises(UserError, match="is a file"):
        export.main([str(checkpoint), "--output", str(checkpoint)])


@pytest.mark.parametrize("args, message", [
    (["--threads", "100000"], "expected an integer from 1 to 1024"),
    (["--iterations", "100000000000000000000"], "expected an integer from 1 to"),
    (["--duration", "1e308"], "at most 86400"),
])
def test_unbounded_run_arguments_are_refused(export_dir, args, message):
    r = _cli("parnet_deploy.cli.bench", "--engine", str(export_dir), *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_threads_are_bounded_in_the_runtime_too(export_dir):
    with pytest.raises(UserError, match="from 1 to 1024, got 100000"):
        runtime.load(export_dir, threads=100000)
    from parnet_deploy.bench.timing import TimingConfig

    with pytest.raises(UserError, match="iterations from 1 to"):
        TimingConfig(min_iterations=10 ** 20).validate()


def test_placement_file_on_one_device_is_refused(export_dir, tmp_path):
    from parnet_deploy.engines.build import BuildConfig, build_engines

    placement = tmp_path / "p.json"
    placement.write_text("{}")
    with pytest.raises(UserError, match="a placement file needs several --devices"):
        build_engines(export_dir, BuildConfig(backend="onnxruntime", placement=str(placement), output=tmp_path))


def test_sparse_files_are_refused_before_reading(export_dir, tmp_path):
    import json
    import shutil

    d = tmp_path / "m"
    shutil.copytree(export_dir, d)
    with open(d / "model.onnx", "r+b") as f:
        f.truncate(3 << 30)  # 3 GiB of holes, no disk
    raw = json.loads((d / "manifest.json").read_text())
    raw["files"]["model.onnx"]["bytes"] = 3 << 30
    (d / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ExportError, match="model.onnx is sparse"):
        load_manifest(d)


@pytest.mark.parametrize("name, mutate", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_python_refuses_every_crafted_manifest_the_c_library_refuses(export_dir, tmp_path, name, mutate):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(export_dir, d)
    (d / "manifest.json").write_bytes(mutate((export_dir / "manifest.json").read_bytes()))
    with pytest.raises(UserError) as e:
        load_manifest(d)
    assert "\n" not in str(e.value) and "\0" not in str(e.value)


def test_manifests_are_written_as_strict_json(tmp_path):
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_json(tmp_path / "m.json", {"dropout": float("nan")})


def test_weights_files_get_the_mode_of_any_new_file(export_dir, checkpoint):
    umask = os.umask(0o022)
    os.umask(umask)
    want = 0o666 & ~umask
    assert stat.S_IMODE((export_dir / "deploy.safetensors").stat().st_mode) == want
    assert stat.S_IMODE(checkpoint.stat().st_mode) == want


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_non_finite_inputs_are_refused_on_every_backend_and_mode(export_dir, backend, mode):
    import numpy as np

    with runtime.load(export_dir, backend=backend, mode=mode, threads=2) as r:
        x = np.zeros(r.input_spec.shape, np.float32)
        for bad in (np.nan, np.inf, -np.inf):
            x.flat[-1] = bad
            with pytest.raises(UserError, match=rf"input\[{x.size - 1}\] is .*not a finite number"):
                r(x)
    with runtime.load(export_dir, backend=backend, mode=mode, threads=2, check_finite=False) as r:
        r(x)  # the documented opt-out: whatever the engine makes of it


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("edit, message", [
    (lambda m: m["whole"]["outputs"][0].update(shape=[1, 20]), r"1, 20"),
    (lambda m: m["whole"]["outputs"][0].update(dtype="float16"), "float16"),
    (lambda m: m["whole"]["inputs"][0].update(dtype="float16"), "float16"),
    (lambda m: m["whole"].update(file="stem.onnx"), "the model"),
])
def test_a_manifest_lying_about_model_io_is_refused_at_load(export_dir, tmp_path, backend, edit, message):
    import json
    import shutil

    d = tmp_path / "m"
    shutil.copytree(export_dir, d)
    raw = json.loads((d / "manifest.json").read_text())
    edit(raw)
    (d / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match=message):
        runtime.load(d, backend=backend)
