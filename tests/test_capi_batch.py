"""Batch N in the native C library (issue 21): prt_batch_bounds, prt_infer_batch, prt_preprocess_u8_batch,
and the named call and prt_io_info on a model with a bounded dynamic batch.

Rows of a batch equal each image run alone (prt_infer_batch at batch 1, and the Python runtime) in whole
and streams mode, on a dynamic export (batch 1..4), its OpenVINO engines and a static batch-3 export;
out-of-bounds batches and wrong lengths are refused in one line; batch preprocessing is bitwise the
per-image call; manifests with bad bounds are refused naming the field; the client runs clean under
valgrind. The C client is tests/capi/capi_batch_test.c, built with the test client of test_capi.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_bn, rel_err
from test_capi import INCOMPATIBLE, OK, ROOT, TOOLS, _client, _edit, _install, _run

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.export import ExportConfig, export_model

pytestmark = pytest.mark.skipif(None in TOOLS, reason="needs cmake, cc, c++ and pkg-config (make capi-deps)")
MODES = ("mode=whole", "mode=streams;threads=4")  # 4: two subgraphs at once


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Path:
    prefix = _install(tmp_path_factory.mktemp("capi_batch"), "prefix")
    return _client(prefix, tmp_path_factory.mktemp("client")).parent / "capi_batch_test"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """One tiny model exported with a dynamic batch 1..4 (and its OpenVINO engines) and a static batch 3."""
    root = tmp_path_factory.mktemp("batch_artifacts")
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    quiet = dict(log=lambda _: None)
    dyn, _ = export_model(model, ExportConfig(output=root, name="dyn", split="shared", batch=(1, 4), verify=False),
                          **quiet)
    b3, _ = export_model(model, ExportConfig(output=root, name="b3", split="shared", batch=(3, 3), verify=False),
                         **quiet)
    engines, _ = build_engines(dyn, BuildConfig(backend="openvino", output=root / "engines", measure_iterations=1),
                               **quiet)
    return {"dyn": dyn, "engines": engines, "b3": b3}


def _images(tmp: Path, n: int = 4) -> Path:
    x = np.random.default_rng(7).standard_normal((n, 3, 32, 32)).astype(np.float32)
    x.tofile(tmp / "x.f32")
    return tmp / "x.f32"


def _rows(client: Path, d: Path, options: str, tmp: Path, bounds: tuple[int, int]) -> dict:
    """The client's rows command: {batch: its output} and "one": each image alone (min 1 only)."""
    x = _images(tmp)
    _run(client, "bounds", str(d), options, *map(str, bounds), "--", "rows", str(d), options, str(x), str(tmp / "y_"))
    out = {b: np.fromfile(tmp / f"y_{b}.f32", np.float32).reshape(b, 10) for b in range(bounds[0], bounds[1] + 1)}
    if bounds[0] == 1:
        out["one"] = np.fromfile(tmp / "y_one.f32", np.float32).reshape(bounds[1], 10)
    return out


@pytest.mark.parametrize("options", MODES)
@pytest.mark.parametrize("kind", ["dyn", "engines"])
def test_rows_of_a_batch_equal_each_image_alone(client, artifacts, tmp_path, kind, options):
    d = artifacts[kind]
    out = _rows(client, d, options, tmp_path, (1, 4))
    x = np.fromfile(tmp_path / "x.f32", np.float32).reshape(4, 3, 32, 32)
    for b in range(1, 5):
        assert rel_err(out[b], out["one"][:b]) <= 1e-5, (kind, options, b, rel_err(out[b], out["one"][:b]))
    mode = options.split(";")[0].split("=")[1]
    with runtime.load(d, backend="openvino", mode=mode, threads=2) as run:
        for b in (1, 4):
            expected = run(x[:b])
            assert rel_err(out[b], expected) <= 1e-5, (kind, options, b, rel_err(out[b], expected))


@pytest.mark.parametrize("options", MODES)
def test_rows_of_a_static_batch_equal_each_image_alone(client, artifacts, tmp_path, options):
    """A static batch-3 export (bounds 3..3): prt_infer and prt_infer_batch(3), rows equal to the
    same model's images run alone (its dynamic export at batch 1)."""
    (tmp_path / "b3").mkdir()
    out = _rows(client, artifacts["b3"], options, tmp_path / "b3", (3, 3))
    alone = _rows(client, artifacts["dyn"], options, tmp_path, (1, 4))["one"][:3]
    assert rel_err(out[3], alone) <= 1e-5, (options, rel_err(out[3], alone))


@pytest.mark.parametrize("kind", ["dyn", "engines", "b3"])
def test_out_of_bounds_batches_and_wrong_lengths_are_refused(client, artifacts, kind):
    d = str(artifacts[kind])
    _run(client, *[a for options in MODES for a in ("--", "misuse", d, options)][1:])


def test_threads_at_different_batches_share_a_handle_bitwise_stable(client, artifacts):
    d = str(artifacts["dyn"])
    _run(client, "threads", d, "threads=2", "8", "30", "--", "threads", d, "mode=streams;threads=4", "8", "20")


def test_preprocess_batch_is_bitwise_the_per_image_call(client, artifacts):
    _run(client, "preprocess", str(artifacts["dyn"]), "5", "--", "preprocess", str(artifacts["b3"]), "3")


@pytest.mark.parametrize("kind", ["dyn", "engines", "b3"])
def test_named_call_takes_the_batch_from_the_byte_counts(client, artifacts, tmp_path, kind):
    x, d = _images(tmp_path), str(artifacts[kind])
    _run(client, *[a for options in MODES for a in ("--", "named", d, options, str(x))][1:])


def _bounds(m: dict, path: tuple, value) -> None:
    """Sets m[path...] (keys and indices) to value."""
    for k in path[:-1]:
        m = m[k]
    m[path[-1]] = value


def _crafted_bounds(artifacts, root: Path) -> list[tuple[str, str, int, str]]:
    """(directory, options, status, text): manifests with batch bounds this library must refuse (or open)."""
    dyn, engines = artifacts["dyn"], artifacts["engines"]
    shape0 = ("whole", "inputs", 0, "shape", 0)
    cases = []

    def add(name, change, text, status=INCOMPATIBLE, src=dyn, manifest="manifest.json", options="-"):
        cases.append((_edit(src, root / name, change, manifest), options, status, text))

    def every(m: dict, value) -> None:
        """dim 0 of every tensor set to `value`."""
        for g in [m["whole"], *m["subgraphs"]]:
            for t in g["inputs"] + g["outputs"]:
                t["shape"][0] = value

    add("inverted", lambda m, _: _bounds(m, shape0, {"min": 4, "max": 1}),
        "whole.inputs[0].shape[0]: bounds 4..1: min must be below max")
    add("equal", lambda m, _: every(m, {"min": 2, "max": 2}),
        "whole.inputs[0].shape[0]: bounds 2..2: min must be below")
    add("min_zero", lambda m, _: _bounds(m, shape0, {"min": 0, "max": 4}),
        "whole.inputs[0].shape[0].min: expected an integer in [1, 1024]")
    add("max_too_big", lambda m, _: every(m, {"min": 1, "max": 1025}),
        "whole.inputs[0].shape[0].max: expected an integer in [1, 1024]")
    add("on_dim_1", lambda m, _: _bounds(m, ("whole", "inputs", 0, "shape", 1), {"min": 1, "max": 3}),
        "whole.inputs[0].shape[1]: batch bounds are allowed at dim 0 only")
    add("missing_max", lambda m, _: _bounds(m, shape0, {"min": 1}),
        "whole.inputs[0].shape[0]: expected exactly the keys")
    add("extra_key", lambda m, _: _bounds(m, shape0, {"min": 1, "max": 4, "opt": 2}),
        "whole.inputs[0].shape[0]: expected exactly the keys")
    add("float_bound", lambda m, _: _bounds(m, shape0, {"min": 1, "max": 4.5}),
        "whole.inputs[0].shape[0].max: expected an integer")
    add("bool_bound", lambda m, _: _bounds(m, shape0, {"min": True, "max": 4}),
        "whole.inputs[0].shape[0].min: expected an integer")
    add("mixed_bounds", lambda m, _: _bounds(m, ("subgraphs", 2, "inputs", 0, "shape", 0), {"min": 1, "max": 8}),
        "subgraphs[2].inputs[0].shape[0]: batch 1..8, but whole.inputs[0] has 1..4")
    add("static_output", lambda m, _: _bounds(m, ("whole", "outputs", 0, "shape", 0), 1),
        "whole.outputs[0].shape[0]: batch static, but whole.inputs[0] has 1..4")
    add("static_input", lambda m, _: _bounds(m, shape0, 1),
        "whole.inputs[0].shape[0]: batch static, but whole.outputs[0] has 1..4")
    add("engines_mixed", lambda m, _: _bounds(m, ("export", "subgraphs", 1, "outputs", 0, "shape", 0), 4),
        "export.subgraphs[1].outputs[0].shape[0]: batch static", src=engines, manifest="engines.json")
    # consistent lies: the ONNX files are symbolic (static claims do not match), engines were compiled for 1..4
    add("all_static", lambda m, _: every(m, 1), "the manifest says", options="mode=streams")
    add("engines_wider", lambda m, _: every(m["export"], {"min": 1, "max": 8}), "the manifest says [1..8, ",
        src=engines, manifest="engines.json")
    # an export's ONNX files take any batch bounds the manifest states alike
    add("wider_ok", lambda m, _: every(m, {"min": 2, "max": 6}), "", status=OK)
    return cases


def test_bad_batch_bounds_are_refused_naming_the_field(client, artifacts, tmp_path):
    args = []
    for d, options, status, text in _crafted_bounds(artifacts, tmp_path):
        args += ["--", "status", d, options, str(status), text]
    _run(client, *args[1:], "--", "bounds", str(tmp_path / "wider_ok"), "-", "2", "6")


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_batch_client_is_clean_under_valgrind(client, artifacts, tmp_path):
    # an export, not engines: valgrind's virtual CPU has no AVX-512 (test_capi.py); each open costs
    # valgrind ~15 s and each new batch shape a compilation: streams mode (links) and preprocessing only
    d, x = str(artifacts["dyn"]), _images(tmp_path)
    r = subprocess.run(
        ["valgrind", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
         "--show-leak-kinds=definite", "--suppressions=" + str(ROOT / "tests" / "capi" / "openvino.supp"),
         str(client), "rows", d, "mode=streams;threads=4", str(x), str(tmp_path / "y_"),  # links rebound per batch
         "--", "preprocess", d, "3", "--", "status", str(tmp_path / "nowhere"), "-", "2", "no such directory"],
        capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0 and "ALL OK" in r.stdout, r.stdout[-4000:] + r.stderr[-6000:]
    assert "definitely lost: 0 bytes" in r.stderr or "no leaks are possible" in r.stderr, r.stderr[-3000:]
    assert "ERROR SUMMARY: 0 errors" in r.stderr, r.stderr[-3000:]


def test_manifest_bounds_are_what_the_python_side_writes(artifacts):
    """The format this library reads: dim 0 {"min", "max"} on every tensor of a dynamic export, ints
    on a static batch-N one."""
    dyn = json.loads((artifacts["dyn"] / "manifest.json").read_text())
    tensors = [t for g in [dyn["whole"], *dyn["subgraphs"]] for t in g["inputs"] + g["outputs"]]
    assert all(t["shape"][0] == {"min": 1, "max": 4} for t in tensors), tensors
    b3 = json.loads((artifacts["b3"] / "manifest.json").read_text())
    assert b3["whole"]["inputs"][0]["shape"] == [3, 3, 32, 32]
