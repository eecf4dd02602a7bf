"""The native C library (capi/): built and installed with CMake, used by C clients compiled
against the installed package through both find_package and pkg-config.

Outputs equal the Python runtime on the same backend, misuse returns statuses (strides whose
image cannot exist, non-finite inputs included), lying or tampered directories and the crafted
manifests of crafted_manifests.py are refused in one-line messages, threads are bitwise stable,
and the whole client runs clean under valgrind (leaks included) and under AddressSanitizer + UBSan.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_bn, rel_err
from crafted_manifests import CRAFTED, MAX_DEPTH, nested

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.artifacts.export_manifest import load_manifest, normalize_u8
from parnet_deploy.artifacts.files import sha256_file
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.export import ExportConfig, export_model
from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export

ROOT = Path(__file__).resolve().parents[1]
TOOLS = [shutil.which(t) for t in ("cmake", "cc", "c++", "pkg-config")]
pytestmark = pytest.mark.skipif(None in TOOLS, reason="needs cmake, cc, c++ and pkg-config (make capi-deps)")
OK, INVALID_ARG, NOT_FOUND, INCOMPATIBLE, RUNTIME = 0, 1, 2, 3, 4


def _openvino_cmake() -> str:
    import openvino

    return str(Path(openvino.__file__).parent / "cmake")


def _cmake(src: Path, build: Path, *defs: str) -> None:
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *defs], check=True,
                   capture_output=True)
    r = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _install(tmp: Path, name: str, *defs: str) -> Path:
    prefix = tmp / name
    _cmake(ROOT / "capi", tmp / f"{name}-build", f"-DOpenVINO_DIR={_openvino_cmake()}", *defs)
    subprocess.run(["cmake", "--install", str(tmp / f"{name}-build"), "--prefix", str(prefix)], check=True,
                   capture_output=True)
    return prefix


def _client(prefix: Path, build: Path, *defs: str) -> Path:
    _cmake(ROOT / "tests" / "capi", build, f"-DCMAKE_PREFIX_PATH={prefix}", *defs)
    return build / "capi_test"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return _install(tmp_path_factory.mktemp("capi"), "prefix")


@pytest.fixture(scope="module")
def client(installed, tmp_path_factory) -> Path:
    """The test client through CMake's find_package(parnet_rt)."""
    return _client(installed, tmp_path_factory.mktemp("client"))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    quiet = dict(log=lambda _: None)
    fp32, _ = export_model(model, ExportConfig(output=root, name="fp32", split="shared", verify=False), **quiet)
    fp16, _ = export_model(model, ExportConfig(output=root, name="fp16", split="shared", precision="fp16",
                                               verify=False), **quiet)
    calib = root / "calib.npz"
    np.savez(calib, images=np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32))
    int8, _ = quantize_export(fp32, QuantizeConfig(calib=str(calib), max_drop=100, output=root), **quiet)
    engines, _ = build_engines(fp32, BuildConfig(backend="openvino", output=root / "engines", measure_iterations=1),
                               **quiet)
    return {"fp32": fp32, "fp16": fp16, "int8": int8, "engines": engines}


def _run(exe: Path, *args: str, timeout: int = 600, env: dict | None = None, prefix: list[str] | None = None):
    r = subprocess.run([*(prefix or []), str(exe), *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0 and "ALL OK" in r.stdout, r.stdout[-4000:] + r.stderr[-6000:]
    return r


def _pattern(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_library_has_no_python_and_exports_only_the_c_api(installed):
    lib = installed / "lib" / "libparnet_rt.so"
    deps = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, check=True).stdout
    assert "libpython" not in deps and "libopenvino.so" in deps, deps
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True,
                             check=True).stdout.split()
    exported = sorted(s for s in symbols if s.startswith("prt_"))
    header = (installed / "include" / "parnet_rt.h").read_text()
    declared = sorted(re.findall(r"^[a-z][\w ]*\*?(prt_\w+)\(", header, re.M))
    assert "prt_preprocess_u8_len" in declared and exported == declared, (exported, declared)
    assert not [s for s in symbols if s.startswith("_Z")], "C++ symbols leak out of the library"


@pytest.mark.parametrize("kind", ["fp32", "fp16", "int8", "engines"])
# streams on 4 threads: two subgraphs at once, as the DAG allows (concurrent infer requests); on 2: in
# waves, two streams side by side on one thread each, then the third on two (chain.py)
@pytest.mark.parametrize("mode, threads", [("whole", 2), ("streams", 4), ("streams", 2)])
def test_outputs_equal_the_python_runtime(client, artifacts, tmp_path, kind, mode, threads):
    d = artifacts[kind]
    with runtime.load(d, backend="openvino", mode=mode, threads=threads) as run:
        x = _pattern(run.input_spec.shape, 1)
        expected = run(x)
    x.tofile(tmp_path / "x.f32")
    _run(client, "run", str(d), f"mode={mode};threads={threads}", str(tmp_path / "x.f32"), str(tmp_path / "y.f32"))
    got = np.fromfile(tmp_path / "y.f32", np.float32).reshape(expected.shape)
    assert rel_err(got, expected) <= 1e-5, (kind, mode, rel_err(got, expected))


IDENTITY = [{"input": "image", "mean": [0, 0, 0], "std": [1, 1, 1]}]  # v3: one entry per image input


def _synthetic_export(d: Path, normalization: list | None = None) -> Path:
    """stem → s1 (reads a) and s2 (reads a and b) → fusion (reads y1, and y2 and z2 from s2): consumers
    reading two tensors of one producer, two subgraphs able to run at once. Exact small-integer math.
    `normalization`: the manifest's (default IDENTITY, for the graph input "image")."""
    import onnx
    from onnx import TensorProto, helper

    def value(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    def model(nodes, inputs, outputs, name):
        graph = helper.make_graph(nodes, name, [value(n, s) for n, s in inputs], [value(n, s) for n, s in outputs])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])

    img, t = ("image", [1, 3, 2, 2]), [1, 3, 2, 2]
    nodes = {"stem": [helper.make_node("Relu", ["image"], ["a"]), helper.make_node("Neg", ["image"], ["b"])],
             "s1": [helper.make_node("Add", ["a", "a"], ["y1"])],
             "s2": [helper.make_node("Mul", ["a", "b"], ["y2"]), helper.make_node("Sub", ["a", "b"], ["z2"])],
             "fusion": [helper.make_node("Sum", ["y1", "y2", "z2"], ["s"]),
                        helper.make_node("Flatten", ["s"], ["logits"], axis=1)]}
    io = {"stem": ([img], [("a", t), ("b", t)]), "s1": ([("a", t)], [("y1", t)]),
          "s2": ([("a", t), ("b", t)], [("y2", t), ("z2", t)]),
          "fusion": ([("y1", t), ("y2", t), ("z2", t)], [("logits", [1, 12])])}
    d.mkdir()
    onnx.save(model([n for k in nodes for n in nodes[k]], [img], [("logits", [1, 12])], "model"), d / "model.onnx")
    for k in nodes:
        onnx.save(model(nodes[k], *io[k], k), d / f"{k}.onnx")

    def spec(name, file, ins, outs):
        return {"name": name, "file": file, "inputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in ins],
                "outputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in outs], "stream": None}
    files = {f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size} for f in sorted(d.iterdir())}
    (d / "manifest.json").write_text(json.dumps({
        "schema": "parnet-deploy/export", "schema_version": 3, "name": "synthetic", "precision": "fp32",
        "model": {"family": "onnx"}, "partition": None,
        "whole": spec("model", "model.onnx", [img], [("logits", [1, 12])]),
        "subgraphs": [spec(k, f"{k}.onnx", *io[k]) for k in nodes], "files": files,
        "normalization": IDENTITY if normalization is None else normalization}))
    return d


def test_a_consumer_reading_several_tensors_of_one_producer(client, tmp_path):
    d = _synthetic_export(tmp_path / "synthetic")
    x = np.arange(-6, 6, dtype=np.float32).reshape(1, 3, 2, 2)
    a, b = np.maximum(x, 0), -x
    expected = ((a + a) + a * b + (a - b)).reshape(1, 12)
    x.tofile(tmp_path / "x.f32")
    # 4: s1 and s2 at once as the DAG allows; 2: s1 and s2 side by side as one wave
    for options in ("mode=whole", "mode=streams;threads=1", "mode=streams;threads=4", "mode=streams;threads=2"):
        _run(client, "run", str(d), options, str(tmp_path / "x.f32"), str(tmp_path / "y.f32"),
             "--", "threads", str(d), options, "4", "50")
        assert np.array_equal(np.fromfile(tmp_path / "y.f32", np.float32).reshape(1, 12), expected), options


# Named tensors (prt_io_info, prt_infer_named): a model of several inputs and outputs of any manifest dtype.
ONNX_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "int32": 6, "int64": 7, "bool": 9, "float16": 10}  # TensorProto's
PRT_DTYPES = {"float32": 0, "float16": 1, "int8": 2, "uint8": 3, "int32": 4, "int64": 5, "bool": 6}  # prt_dtype


def _named_export(d: Path, inputs: list, outputs: list, subgraphs: dict, normalization: list | None = None) -> Path:
    """An export of graph `inputs` and `outputs` ([(name, shape, dtype)]) computed by `subgraphs`
    ({name: (onnx nodes, inputs, outputs)}, in an execution order); model.onnx holds every node.
    No image input: `normalization` is empty unless given."""
    from onnx import helper

    def value(t):
        return helper.make_tensor_value_info(t[0], ONNX_TYPES[t[2]], t[1])

    def model(nodes, ins, outs, name):
        graph = helper.make_graph(nodes, name, [value(t) for t in ins], [value(t) for t in outs])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])

    import onnx
    d.mkdir()
    onnx.save(model([n for k in subgraphs for n in subgraphs[k][0]], inputs, outputs, "model"), d / "model.onnx")
    for k, (nodes, ins, outs) in subgraphs.items():
        onnx.save(model(nodes, ins, outs, k), d / f"{k}.onnx")

    def spec(name, file, ins, outs):
        return {"name": name, "file": file, "inputs": [{"name": n, "shape": s, "dtype": t} for n, s, t in ins],
                "outputs": [{"name": n, "shape": s, "dtype": t} for n, s, t in outs], "stream": None}
    files = {f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size} for f in sorted(d.iterdir())}
    (d / "manifest.json").write_text(json.dumps({
        "schema": "parnet-deploy/export", "schema_version": 3, "name": d.name, "precision": "fp32",
        "model": {"family": "onnx"}, "partition": None,
        "whole": spec("model", "model.onnx", inputs, outputs),
        "subgraphs": [spec(k, f"{k}.onnx", ins, outs) for k, (_, ins, outs) in subgraphs.items()], "files": files,
        "normalization": normalization or []}))
    return d


def _two_by_two(d: Path) -> Path:
    """a, b (1, 4) → c = a + b, d = a * b, e = c - d; graph outputs c and e. In streams mode c is
    both a graph output and read by a later subgraph, and "sum" and "prod" can run at once."""
    from onnx import helper

    t = lambda n: (n, [1, 4], "float32")  # noqa: E731
    return _named_export(d, [t("a"), t("b")], [t("c"), t("e")], {
        "sum": ([helper.make_node("Add", ["a", "b"], ["c"])], [t("a"), t("b")], [t("c")]),
        "prod": ([helper.make_node("Mul", ["a", "b"], ["d"])], [t("a"), t("b")], [t("d")]),
        "diff": ([helper.make_node("Sub", ["c", "d"], ["e"])], [t("c"), t("d")], [t("e")])})


def _dtypes(d: Path) -> Path:
    """float16, int8 and uint8 inputs; float32, float16, int8 and uint8 outputs (exact small values)."""
    from onnx import helper

    h, i, u = ("h", [2, 3], "float16"), ("i", [2, 3], "int8"), ("u", [2, 3], "uint8")
    s, h2, i2, u2 = ("s", [2, 3], "float32"), ("h2", [2, 3], "float16"), ("i2", [2, 3], "int8"), ("u2", [2, 3], "uint8")
    node = helper.make_node
    floats = [*(node("Cast", [x], [x + "f"], to=1) for x in "hiu"), node("Sum", ["hf", "if", "uf"], ["s"]),
              node("Add", ["h", "h"], ["h2"])]
    ints = [node("Neg", ["i"], ["i2"]), node("Max", ["u", "u"], ["u2"])]
    return _named_export(d, [h, i, u], [s, h2, i2, u2],
                         {"floats": (floats, [h, i, u], [s, h2]), "ints": (ints, [i, u], [i2, u2])})


def _int_dtypes(d: Path) -> Path:
    """int64, bool and int32 inputs and outputs: twice = q + q, flip = not mask, pick = where(mask, q,
    twice), neg = -k (twice is both a graph output and read by a later subgraph)."""
    from onnx import helper

    t = lambda name, dtype: (name, [2, 3], dtype)  # noqa: E731
    q, mask, k = t("q", "int64"), t("mask", "bool"), t("k", "int32")
    twice, flip, pick, neg = t("twice", "int64"), t("flip", "bool"), t("pick", "int64"), t("neg", "int32")
    node = helper.make_node
    return _named_export(d, [q, mask, k], [twice, flip, pick, neg], {
        "longs": ([node("Add", ["q", "q"], ["twice"])], [q], [twice]),
        "masks": ([node("Not", ["mask"], ["flip"]), node("Where", ["mask", "q", "twice"], ["pick"])], [mask, q, twice],
                  [flip, pick]),
        "ints": ([node("Neg", ["k"], ["neg"])], [k], [neg])})


def _named_run(client, d: Path, options: str, tmp: Path, inputs: dict) -> tuple[list[str], dict]:
    """The client's `named` command on `inputs` ({name: array}): its info lines and the outputs read back."""
    for name, x in inputs.items():
        x.tofile(tmp / f"in_{name}.bin")
    _run(client, "named", str(d), options, str(tmp / "in_"), str(tmp / "out_"))
    info = (tmp / "out_info.txt").read_text().splitlines()
    outs = {}
    for line in info:
        side, _, name, dtype, dims = line.split()
        if side == "output":
            np_type = np.dtype({v: k for k, v in PRT_DTYPES.items()}[int(dtype)])
            outs[name] = np.fromfile(tmp / f"out_{name}.bin", np_type).reshape([int(x) for x in dims.split(",")])
    return info, outs


@pytest.mark.parametrize("options", ["mode=whole", "mode=streams;threads=1", "mode=streams;threads=4"])
def test_named_tensors_equal_numpy(client, tmp_path, options):
    d = _two_by_two(tmp_path / "two_by_two")
    a = np.array([[1.5, -2, 3, 0.25]], np.float32)
    b = np.array([[4, 0.5, -6, 8]], np.float32)
    info, outs = _named_run(client, d, options, tmp_path, {"a": a, "b": b})
    assert info == ["input 0 a 0 1,4", "input 1 b 0 1,4", "output 0 c 0 1,4", "output 1 e 0 1,4"]
    assert np.array_equal(outs["c"], a + b) and np.array_equal(outs["e"], (a + b) - a * b), outs

    dt = _dtypes(tmp_path / "dtypes")
    h = np.array([[0.5, -1.25, 2], [3, -4.5, 100]], np.float16)
    i = np.array([[-127, -1, 0], [1, 50, 127]], np.int8)  # not -128: its negation saturates in OpenVINO
    u = np.array([[0, 1, 2], [127, 200, 255]], np.uint8)
    info, outs = _named_run(client, dt, options, tmp_path, {"h": h, "i": i, "u": u})
    assert info == ["input 0 h 1 2,3", "input 1 i 2 2,3", "input 2 u 3 2,3", "output 0 s 0 2,3", "output 1 h2 1 2,3",
                    "output 2 i2 2 2,3", "output 3 u2 3 2,3"]
    assert np.array_equal(outs["s"], h.astype(np.float32) + i + u.astype(np.float32))
    assert np.array_equal(outs["h2"], h + h) and np.array_equal(outs["i2"], -i) and np.array_equal(outs["u2"], u)


@pytest.mark.parametrize("options", ["mode=whole", "mode=streams;threads=1", "mode=streams;threads=4"])
def test_named_int64_bool_and_int32_tensors_equal_numpy(client, tmp_path, options):
    """Schema 3's integer and bool dtypes: 8-, 1- and 4-byte elements, passed and read back exactly."""
    d = _int_dtypes(tmp_path / "int_dtypes")
    q = np.array([[-(1 << 29), -1, 0], [1, 123456, 1 << 29]], np.int64)  # q + q fits 32 bits, should a plugin narrow
    mask = np.array([[True, False, True], [False, False, True]])
    k = np.array([[-7, 0, 5], [1 << 30, -(1 << 30) + 1, 2_000_000_000]], np.int32)
    info, outs = _named_run(client, d, options, tmp_path, {"q": q, "mask": mask, "k": k})
    assert info == ["input 0 q 5 2,3", "input 1 mask 6 2,3", "input 2 k 4 2,3", "output 0 twice 5 2,3",
                    "output 1 flip 6 2,3", "output 2 pick 5 2,3", "output 3 neg 4 2,3"]
    assert outs["twice"].dtype == np.int64 and np.array_equal(outs["twice"], q + q), outs["twice"]
    assert outs["flip"].dtype == np.bool_ and np.array_equal(outs["flip"], ~mask), outs["flip"]
    assert np.array_equal(outs["pick"], np.where(mask, q, q + q)), outs["pick"]
    assert outs["neg"].dtype == np.int32 and np.array_equal(outs["neg"], -k), outs["neg"]


def _refused(exe: Path, *args: str) -> str:
    """The client's stdout where some expected-OK call of `args` failed (its FAIL lines quote prt_last_error)."""
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)
    assert r.returncode not in (0, 100) and "FAILED" in r.stdout, r.stdout + r.stderr[-3000:]
    return r.stdout


def test_schema_versions_other_than_3_are_refused(client, tmp_path):
    d = _synthetic_export(tmp_path / "synthetic")
    v2 = _edit(d, tmp_path / "v2", lambda m, _: m.update(schema_version=2, normalization={"mean": [0, 0, 0],
                                                                                          "std": [1, 1, 1]}))
    v2_bare = _edit(d, tmp_path / "v2_bare", lambda m, _: m.update(schema_version=2))
    v4 = _edit(d, tmp_path / "v4", lambda m, _: m.update(schema_version=4))
    as_text = _edit(d, tmp_path / "as_text", lambda m, _: m.update(schema_version="3"))
    text = "schema version is not supported (this library reads 3); re-export it with parnet-export"
    engines_v2 = tmp_path / "engines_v2"  # refused before anything else of it is read
    engines_v2.mkdir()
    (engines_v2 / "engines.json").write_text(json.dumps({"schema": "parnet-deploy/engines", "schema_version": 2}))
    args = [a for bad in (v2, v2_bare, v4, as_text) for a in ("status", bad, "-", str(INCOMPATIBLE), text, "--")]
    _run(client, *args, "status", str(engines_v2), "-", str(INCOMPATIBLE),
         "schema version is not supported (this library reads 3); rebuild with parnet-build",
         "--", "status", str(d), "-", str(OK), "-")


def test_no_normalization_refuses_the_image_calls_not_the_named_call(client, tmp_path):
    """normalization [] (or an entry of other than 3 values for the image input): the export opens and
    the named call runs it, but the image classifier's calls are refused, naming normalization."""
    x = np.arange(-6, 6, dtype=np.float32).reshape(1, 3, 2, 2)
    a, b = np.maximum(x, 0), -x
    expected = ((a + a) + a * b + (a - b)).reshape(1, 12)
    np.zeros((2, 2, 3), np.uint8).tofile(tmp_path / "img.u8")
    x.tofile(tmp_path / "x.f32")
    gray = [{"input": "image", "mean": [0.5], "std": [0.25], "layout": "NCHW gray", "note": ""}]
    for name, normalization, reason in (
            ("none", [], "the export declares no normalization for the input 'image'"),
            ("gray", gray, "the export's normalization for the input 'image' has 1 channel(s), "
                           "not the image classifier's 3 (RGB)")):
        d = _synthetic_export(tmp_path / name, normalization)
        out = _refused(client, "preprocess", str(d), str(tmp_path / "img.u8"), "2", "2", "6", "0",
                       str(tmp_path / "p.f32"))
        for function in ("prt_preprocess_u8", "prt_preprocess_u8_len"):
            assert f"{function}: {reason}; use prt_io_info and prt_infer_named" in out, out
        out = _refused(client, "run", str(d), "-", str(tmp_path / "x.f32"), str(tmp_path / "y.f32"))
        assert f"prt_infer: {reason}" in out, out
        for options in ("mode=whole", "mode=streams;threads=4"):
            info, outs = _named_run(client, d, options, tmp_path, {"image": x})
            assert info == ["input 0 image 0 1,3,2,2", "output 0 logits 0 1,12"]
            assert np.array_equal(outs["logits"], expected), (name, options)


def test_normalization_entries_are_checked_at_open(client, tmp_path):
    d = _synthetic_export(tmp_path / "synthetic")
    entry = IDENTITY[0]

    def with_normalization(name, normalization):
        return _edit(d, tmp_path / name, lambda m, _: m.update(normalization=normalization))
    cases = [("unknown_input", [{**entry, "input": "logits"}], "normalization[0].input: 'logits' is not an input"),
             ("twice", [entry, entry], "normalization[1].input: 'image' is listed twice"),
             ("no_input", [{"mean": [0, 0, 0], "std": [1, 1, 1]}], "normalization[0].input: missing"),
             ("v2_object", {"mean": [0, 0, 0], "std": [1, 1, 1]}, "normalization: expected a list"),
             ("nine", [entry] * 9, "normalization: expected a list of at most 8"),
             ("lengths_differ", [{**entry, "std": [1, 1]}], "normalization[0].std: 2 numbers, mean has 3"),
             ("no_channels", [{**entry, "mean": [], "std": []}], "normalization[0].mean: expected a list of 1..64"),
             ("65_channels", [{**entry, "mean": [0] * 65, "std": [1] * 65}], "normalization[0].mean: expected a list"),
             ("zero_std", [{**entry, "std": [0, 1, 1]}], "normalization[0].std: expected numbers in [1e-6, 1000]"),
             ("huge_mean", [{**entry, "mean": [1001, 0, 0]}], "normalization[0].mean: expected numbers in [-1000"),
             ("overflow", [{**entry, "std": [1e39, 1, 1]}], "finite float32")]
    args = []
    for name, normalization, text in cases:
        args += ["status", with_normalization(name, normalization), "-", str(INCOMPATIBLE), text, "--"]
    many = [{"input": "image", "mean": [0] * 64, "std": [1] * 64, "layout": "any", "note": "not read"}]
    _run(client, *args, "status", with_normalization("64_channels", many), "-", str(OK), "-")


@pytest.mark.parametrize("name", ["dla34", "fractalnet", "inceptionv3"])
def test_named_call_runs_split_foreign_models(client, tmp_path, name):
    """Architectures nobody here wrote, split by parnet-export MODEL.onnx: the named call in streams mode
    equals the unsplit graph's reference (rtol 1e-5), dims and dtype read from the library."""
    from test_onnx_foreign import foreign_export

    target, manifest = foreign_export(name, tmp_path)
    assert len(manifest.subgraphs) >= 2
    ref = np.load(target / "reference.npz")
    for options in ("mode=whole", "mode=streams;threads=2"):
        info, outs = _named_run(client, target, options, tmp_path, {"x": ref["input0"]})
        shape = ",".join(map(str, ref["input0"].shape))
        assert info == [f"input 0 x 0 {shape}", f"output 0 y 0 {','.join(map(str, ref['output0'].shape))}"]
        np.testing.assert_allclose(outs["y"], ref["output0"], rtol=1e-5,
                                   atol=1e-5 * float(np.abs(ref["output0"]).max()), err_msg=options)


def test_named_misuse_leaves_outputs_untouched(client, tmp_path):
    d = _two_by_two(tmp_path / "two_by_two")
    _run(client, "named_misuse", str(d), "mode=whole", "--", "named_misuse", str(d), "mode=streams;threads=4")


def test_named_graph_io_lies_are_refused(client, tmp_path):
    """The graph's named tensors are the model's: a manifest whose whole graph disagrees with its
    subgraphs, or names a tensor no subgraph reads, is refused at open (streams mode)."""
    d = _two_by_two(tmp_path / "two_by_two")
    lie = _edit(d, tmp_path / "shape_lie", lambda m, _: m["whole"]["inputs"][1].update(shape=[1, 8]))
    dtype = _edit(d, tmp_path / "dtype_lie", lambda m, _: m["whole"]["outputs"][1].update(dtype="float16"))
    _run(client, "status", lie, "mode=streams", str(INCOMPATIBLE), "graph input 'b' is float32 [1, 4] in the model",
         "--", "status", lie, "mode=whole", str(INCOMPATIBLE), "the manifest says",
         "--", "status", dtype, "mode=streams", str(INCOMPATIBLE), "the manifest says float16 [1, 4]")


def test_misuse_returns_statuses(client, artifacts):
    _run(client, "misuse", str(artifacts["fp32"]))


def test_threads_are_bitwise_stable_on_shared_and_separate_handles(client, artifacts):
    _run(client, "threads", str(artifacts["fp32"]), "threads=1", "8", "500",
         "--", "threads", str(artifacts["int8"]), "mode=streams;threads=4", "8", "100")


def test_preprocessing_equals_python(client, artifacts, tmp_path):
    d = artifacts["fp32"]
    norm = load_manifest(d).normalization
    h = w = 32
    stride = 3 * w + 5  # padded rows
    image = np.random.default_rng(3).integers(0, 256, (h, stride), dtype=np.uint8)
    pixels = image[:, :3 * w].reshape(h * w, 3)
    pixels[:256] = np.arange(256, dtype=np.uint8)[:, None]  # every byte value in every channel
    image[:, :3 * w] = pixels.reshape(h, 3 * w)
    image.tofile(tmp_path / "img.u8")
    hwc = image[:, :3 * w].reshape(h, w, 3)
    for order, bgr in ((0, False), (1, True)):
        _run(client, "preprocess", str(d), str(tmp_path / "img.u8"), str(h), str(w), str(stride), str(order),
             str(tmp_path / "x.f32"))
        got = np.fromfile(tmp_path / "x.f32", np.float32).reshape(3, h, w)
        assert np.array_equal(got, normalize_u8(hwc, norm.mean, norm.std, bgr=bgr))  # bitwise


def _edit(src: Path, dst: Path, change, manifest: str = "manifest.json") -> str:
    shutil.copytree(src, dst)
    m = json.loads((dst / manifest).read_text())
    change(m, dst)
    (dst / manifest).write_text(json.dumps(m))
    return str(dst)


def _external_data(location: str):
    """model.onnx with its weights in a file it names (absolute, or relative to the working
    directory), hashes updated: OpenVINO would read that file, outside the directory."""
    def change(m, d: Path) -> None:
        import onnx

        model = onnx.load(d / "model.onnx")
        onnx.save_model(model, d / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
        (d / "weights.bin").rename(d.parent / "weights.bin")
        model = onnx.load(d / "model.onnx", load_external_data=False)
        for t in model.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location if location.startswith("/") else e.value
        onnx.save_model(model, d / "model.onnx")
        m["files"]["model.onnx"] = {"sha256": sha256_file(d / "model.onnx"), "bytes": (d / "model.onnx").stat().st_size}
    return change


def _as_model_file(m, d: Path, data: bytes) -> None:
    (d / "model.onnx").write_bytes(data)
    m["files"]["model.onnx"] = {"sha256": sha256_file(d / "model.onnx"), "bytes": len(data)}


def _alias(m, d: Path) -> None:
    """fusion reads stream0's output twice, and stream1 is gone: two names for one model port."""
    fusion = m["subgraphs"][-1]
    dropped = m["subgraphs"].pop(2)
    first = fusion["inputs"][0]
    fusion["inputs"] = [first if t["name"] == dropped["outputs"][0]["name"] else t for t in fusion["inputs"]]


def _symlink(d: Path, target: Path) -> None:
    (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(target)  # the same bytes, so only the link itself is wrong


def _lies(artifacts, root: Path) -> list[tuple[str, str, int, str]]:
    """(directory, options, status, text) for every lie a manifest or directory can tell."""
    fp32, engines = artifacts["fp32"], artifacts["engines"]
    cases: list[tuple[str, str, int, str]] = []

    def add(name, change, status, text, options="-", src=fp32, manifest="manifest.json"):
        cases.append((_edit(src, root / name, change, manifest), options, status, text))

    add("six_d", lambda m, d: m["whole"]["inputs"][0].update(shape=[1, 3, 32, 32, 1, 1]), INCOMPATIBLE,
        "the manifest says")
    add("wide_output", lambda m, d: m["whole"]["outputs"][0].update(shape=[1, 1000]), INCOMPATIBLE, "the manifest says")
    add("stream_lie", lambda m, d: m["subgraphs"][1]["inputs"][0].update(shape=[1, 8, 16, 16]), INCOMPATIBLE,
        "the manifest says", options="mode=streams")
    for name, src, options, where, key, dtype in _dtype_lies(artifacts):
        add(name, lambda m, d, where=where, key=key, dtype=dtype: _tensor(m, where, key).update(dtype=dtype),
            INCOMPATIBLE, f"the manifest says {dtype}", options=options, src=src,
            manifest="engines.json" if src == engines else "manifest.json")
    add("unlisted", lambda m, d: m["files"].pop("model.onnx"), INCOMPATIBLE, "no entry for the subgraph file")
    add("escape", lambda m, d: m["whole"].update(file="../fp32/model.onnx"), INCOMPATIBLE, "not a valid name")
    add("escape_files", lambda m, d: m["files"].update({"../x": m["files"]["model.onnx"]}), INCOMPATIBLE,
        "not a file name inside")
    add("symlink", lambda m, d: _symlink(d, fp32 / "model.onnx"), INCOMPATIBLE, "symbolic link")
    add("missing", lambda m, d: (d / "model.onnx").unlink(), NOT_FOUND, "is missing")
    add("tampered", lambda m, d: (d / "model.onnx").open("ab").write(b"\0"), INCOMPATIBLE, "bytes")
    add("tampered_same_size", lambda m, d: m["files"]["model.onnx"].update(sha256="0" * 64), INCOMPATIBLE,
        "does not match its sha256")
    add("old_schema", lambda m, d: m.update(schema_version=1), INCOMPATIBLE, "schema version")
    add("no_std", lambda m, d: m["normalization"][0].update(std=[0, 1, 1]), INCOMPATIBLE, "[1e-6, 1000]")
    add("cycle", lambda m, d: m["subgraphs"].reverse(), INCOMPATIBLE, "no earlier subgraph produces",
        options="mode=streams")
    add("external_absolute", _external_data(str(root / "weights.bin")), INCOMPATIBLE, "external data")
    add("external_relative", _external_data("weights.bin"), INCOMPATIBLE, "external data")  # cwd-relative
    add("alias", _alias, INCOMPATIBLE, "listed twice", options="mode=streams")
    add("huge_std", lambda m, d: m["normalization"][0].update(std=[1e39, 1, 1]), INCOMPATIBLE, "finite float32")
    add("tiny_std", lambda m, d: m["normalization"][0].update(std=[1e-45, 1, 1]), INCOMPATIBLE, "[1e-6, 1000]")
    add("huge_mean", lambda m, d: m["normalization"][0].update(mean=[3.4e38, 0, 0]), INCOMPATIBLE, "[-1000, 1000]")
    add("not_onnx", lambda m, d: _as_model_file(m, d, b'<?xml version="1.0"?><net name="x" version="11"></net>'),
        INCOMPATIBLE, "not an ONNX model")
    add("other_cpu", lambda m, d: [v.update(name="Some Other CPU") for v in m["devices"].values()], INCOMPATIBLE,
        "this CPU is", src=engines, manifest="engines.json")
    add("other_version", lambda m, d: m["backend"].update(version="2020.1.0"), INCOMPATIBLE, "this is OpenVINO",
        src=engines, manifest="engines.json")
    add("other_backend", lambda m, d: m["backend"].update(name="onnxruntime"), INCOMPATIBLE, "built for onnxruntime",
        src=engines, manifest="engines.json")
    add("engine_precision", lambda m, d: None, INVALID_ARG, "built for fp32", options="precision_hint=bf16",
        src=engines, manifest="engines.json")
    add("engine_escape", lambda m, d: m["engines"]["cpu"].update(model="../../x.blob"), INCOMPATIBLE,
        "not a valid name", src=engines, manifest="engines.json")
    (root / "garbage").mkdir(parents=True)
    (root / "garbage" / "manifest.json").write_text("{not json")
    cases.append((str(root / "garbage"), "-", INCOMPATIBLE, "malformed manifest"))
    (root / "empty").mkdir()
    cases.append((str(root / "empty"), "-", NOT_FOUND, "no manifest.json"))
    return cases


def _tensor(m: dict, where: tuple, key: str) -> dict:
    """m[where...][key][0]: a tensor of a subgraph (an engines.json's export view too)."""
    for k in where:
        m = m[k]
    return m[key][0]


def _dtype_lies(artifacts) -> list[tuple[str, Path, str, tuple, str, str]]:
    """(name, source, options, subgraph path, inputs|outputs, dtype) for each dtype lie: the graph's
    float32 ends called float16, an fp16 export's float16 inner tensors called float32."""
    fp32, fp16, engines = artifacts["fp32"], artifacts["fp16"], artifacts["engines"]
    return [("dtype_output", fp32, "-", ("whole",), "outputs", "float16"),
            ("dtype_input", fp32, "-", ("whole",), "inputs", "float16"),
            ("dtype_fp16_inner", fp16, "mode=streams", ("subgraphs", 1), "inputs", "float32"),
            ("dtype_fp16_stem", fp16, "mode=streams", ("subgraphs", 0), "outputs", "float32"),
            ("dtype_engines", engines, "-", ("export", "whole"), "outputs", "float16")]


def test_fp16_exports_declare_float16_inner_tensors(artifacts):
    """What the dtype check compares: an fp16 export's subgraphs pass float16 tensors between them
    (declared so, truthfully), its graph input and output stay float32."""
    m = load_manifest(artifacts["fp16"])
    inner = {t.dtype for s in m.subgraphs for t in (*s.inputs, *s.outputs) if t.name not in ("image", "logits")}
    assert inner == {"float16"} and m.input.dtype == m.output.dtype == "float32"


# What a one-line message shows of the name a crafted manifest injects (text after a NUL survives).
ESCAPED = {"nul_in_tensor_name": "logits\\x00after", "newline_in_tensor_name": "logits\\x0aafter",
           "nul_in_subgraph_name": "stem\\x00after", "newline_in_subgraph_name": "stem\\x0d\\x0aafter",
           "newline_in_file_name": "model\\x0aafter.onnx", "duplicate_key": "'schema_version' appears twice",
           "nesting_just_too_deep": "nested deeper than 64", "nesting_two_million_deep": "nested deeper than 64",
           "bom": "byte order mark", "trailing_nul": "a NUL byte at offset", "nul_then_anything": "a NUL byte"}


def _crafted(artifacts, root: Path) -> list[tuple[str, str, int, str]]:
    """(directory, options, status, text) for each of CRAFTED, and a manifest nested exactly
    MAX_DEPTH deep that opens."""
    fp32 = artifacts["fp32"]
    valid = (fp32 / "manifest.json").read_bytes()
    cases = []
    for name, mutate in [*CRAFTED, ("deepest_allowed", nested(MAX_DEPTH))]:
        shutil.copytree(fp32, root / name)
        (root / name / "manifest.json").write_bytes(mutate(valid))
        status = OK if name == "deepest_allowed" else INCOMPATIBLE
        cases.append((str(root / name), "-", status, ESCAPED.get(name, "manifest.json")))
    return cases


def test_crafted_manifests_are_refused_in_one_line(client, artifacts, tmp_path):
    _run(client, *[a for case in _crafted(artifacts, tmp_path) for a in ("--", "status", *map(str, case))][1:])


def test_lying_and_tampered_directories_are_refused(client, artifacts, tmp_path, monkeypatch):
    args = []
    for d, options, status, text in _lies(artifacts, tmp_path):
        args += ["status", d, options, str(status), text, "--"]
    monkeypatch.chdir(tmp_path)  # where a relative external-data location would be found
    _run(client, *args[:-1])


def test_sparse_and_oversized_files_cost_no_memory(client, artifacts, tmp_path):
    def sparse(size: int, true_hash: bool):
        def change(m, d: Path) -> None:
            os.truncate(d / "model.onnx", size)  # holes: no disk, and no memory unless the library allocates it
            m["files"]["model.onnx"]["bytes"] = size
            if true_hash:  # the manifest is untrusted too: it can state the real hash of the zeros
                m["files"]["model.onnx"]["sha256"] = sha256_file(d / "model.onnx")
        return change
    cases = [("sparse", sparse(1 << 30, False), "is sparse"), ("sparse_true_hash", sparse(1 << 30, True), "is sparse"),
             ("oversized", sparse((2 << 30) + 1, False), "expected an integer in [0, 2147483648]")]
    args = []
    for name, change, text in cases:
        args += ["status", _edit(artifacts["fp32"], tmp_path / name, change), "-", str(INCOMPATIBLE), text, "--"]
    # the process's own peak (VmHWM: a forked child's ru_maxrss would include pytest's memory)
    _run(client, *args, "peak", str(256 << 10))


def _preprocess_args(d: Path, tmp: Path) -> list[str]:
    """A preprocess command on a padded 32x32 image (prt_preprocess_u8_len on exactly its span)."""
    stride = 3 * 32 + 5
    np.random.default_rng(3).integers(0, 256, (32, stride), dtype=np.uint8).tofile(tmp / "img.u8")
    return ["--", "preprocess", str(d), str(tmp / "img.u8"), "32", "32", str(stride), "1", str(tmp / "x_pre.f32")]


def _named_args(tmp: Path, everything: bool = True) -> list[str]:
    """prt_infer_named and prt_io_info in whole and streams mode, dtypes (int64, bool and int32 too),
    misuse (for ASan); valgrind (everything=False: each open costs it ~15 s) takes the streams ones:
    DAG wiring, scratch, the integer and bool dtypes, misuse."""
    d, dt, it = _two_by_two(tmp / "two_by_two"), _dtypes(tmp / "dtypes"), _int_dtypes(tmp / "int_dtypes")
    for name, x in {"a": np.ones((1, 4), np.float32), "b": np.full((1, 4), 2, np.float32),
                    "h": np.ones((2, 3), np.float16), "i": np.ones((2, 3), np.int8),
                    "u": np.ones((2, 3), np.uint8), "q": np.full((2, 3), -3, np.int64),
                    "mask": np.eye(2, 3, dtype=bool), "k": np.arange(6, dtype=np.int32).reshape(2, 3)}.items():
        x.tofile(tmp / f"in_{name}.bin")
    streams = ["--", "named", str(d), "mode=streams;threads=4", str(tmp / "in_"), str(tmp / "out_"),
               "--", "named", str(it), "mode=streams;threads=4", str(tmp / "in_"), str(tmp / "out_"),
               "--", "named_misuse", str(d), "mode=streams;threads=4"]
    whole = ["--", "named", str(dt), "mode=whole", str(tmp / "in_"), str(tmp / "out_"),
             "--", "named_misuse", str(d), "mode=whole"]
    return streams + whole if everything else streams


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_client_is_clean_under_valgrind_leaks_included(client, artifacts, tmp_path):
    # no engine blob here: valgrind's virtual CPU has no AVX-512, so an AVX-512 blob is refused (correctly)
    d, x = artifacts["fp32"], tmp_path / "x.f32"
    _pattern((1, 3, 32, 32), 0).tofile(x)
    lie = _edit(d, tmp_path / "dtype_lie", lambda m, _: m["whole"]["outputs"][0].update(dtype="float16"))
    r = _run(client, "misuse", str(d), "--", "run", str(d), "mode=streams;threads=4", str(x), str(tmp_path / "y"),
             "--", "threads", str(artifacts["int8"]), "threads=2", "3", "3",
             "--", "threads", str(d), "mode=streams;threads=2", "2", "2",
             "--", "status", str(tmp_path / "nowhere"), "-", str(NOT_FOUND), "no such directory",
             "--", "status", lie, "-", str(INCOMPATIBLE), "the manifest says float16",
             *_preprocess_args(d, tmp_path), *_named_args(tmp_path, everything=False),
             *[a for case in _crafted(artifacts, tmp_path / "crafted") for a in ("--", "status", *map(str, case))],
             prefix=["valgrind", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
                     "--show-leak-kinds=definite", "--suppressions=" + str(ROOT / "tests" / "capi" / "openvino.supp")],
             timeout=1200)
    assert "definitely lost: 0 bytes" in r.stderr or "no leaks are possible" in r.stderr, r.stderr[-3000:]
    assert "ERROR SUMMARY: 0 errors" in r.stderr, r.stderr[-3000:]


def test_client_is_clean_under_address_and_undefined_sanitizers(artifacts, tmp_path):
    prefix = _install(tmp_path, "asan", "-DPARNET_RT_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Debug")
    exe = _client(prefix, tmp_path / "client", "-DSANITIZE=ON")
    d, x = artifacts["fp32"], tmp_path / "x.f32"
    _pattern((1, 3, 32, 32), 0).tofile(x)
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
           "LSAN_OPTIONS": "suppressions=" + str(ROOT / "tests" / "capi" / "lsan.supp"),
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    _run(exe, "misuse", str(d), "--", "run", str(d), "mode=streams;threads=4", str(x), str(tmp_path / "y"),
         "--", "threads", str(artifacts["int8"]), "mode=streams;threads=4", "4", "20",
         "--", "threads", str(artifacts["int8"]), "mode=streams;threads=2", "4", "20",
         *[a for case in _lies(artifacts, tmp_path / "lies") for a in ("--", "status", *map(str, case))],
         *_preprocess_args(d, tmp_path), *_named_args(tmp_path),
         *[a for case in _crafted(artifacts, tmp_path / "crafted") for a in ("--", "status", *map(str, case))],
         env=env)
    # batch N (test_capi_batch.py's client): a dynamic batch 1..4, every batch, links rebound per batch
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_cifar_s", planes=(8, 16, 32, 32)))
    dyn, _ = export_model(model, ExportConfig(output=tmp_path, name="dyn", split="shared", batch=(1, 4), verify=False),
                          log=lambda _: None)
    _pattern((4, 3, 32, 32), 0).tofile(x)
    _run(exe.parent / "capi_batch_test", "rows", str(dyn), "mode=streams;threads=4", str(x), str(tmp_path / "y_"),
         "--", "rows", str(dyn), "mode=whole", str(x), str(tmp_path / "y_"), "--", "misuse", str(dyn), "mode=whole",
         "--", "named", str(dyn), "mode=streams;threads=4", str(x), "--", "preprocess", str(dyn), "5",
         "--", "threads", str(dyn), "mode=streams;threads=4", "4", "5", env=env)
