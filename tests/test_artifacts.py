"""Manifests are typed and validated on load; artifact directories are written safely."""

import json
import os
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
    assert [s.stream for s in m.subgraphs] == [None, 0, 1, 2, None]
    assert m.dag.producer("x1") == "stem" and m.dag.producer("image") == "input"
    assert m.dag.consumers("y2") == ("fusion",) and m.dag.predecessors("fusion") == ("stream0", "stream1", "stream2")
    assert m.dag.levels() == (("stem",), ("stream0", "stream1", "stream2"), ("fusion",)) and m.dag.width == 3
    with pytest.raises(Exception):
        m.name = "other"  # frozen


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
