"""``parnet-export MODEL.onnx``: any multi-branch model, split by the cost model, verified, written as an
export every engine and executor runs unchanged; untrusted files refused in one line, nothing written."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import TINY, randomize_bn
from onnx import TensorProto, helper
from torch import nn

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.artifacts.schema import BatchDim
from parnet_deploy.bench.engine import bench_engine
from parnet_deploy.bench.timing import TimingConfig
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.errors import UserError
from parnet_deploy.export import load_manifest
from parnet_deploy.export.onnx_export import OnnxExportConfig, export_onnx
from parnet_deploy.partition import CostModel
from parnet_deploy.reparam import reparameterize

# fixed numbers (no measurement): decisions do not depend on this machine, and a cheap launch splits
CHEAP = CostModel(launch_ms=0.002, gflops_per_s=50.0, gbytes_per_s=10.0)
COSTLY = CostModel(launch_ms=5.0, gflops_per_s=50.0, gbytes_per_s=10.0)
QUIET = dict(log=lambda _: None)


def save_onnx(model: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic=None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, str(path), opset_version=18, dynamo=False, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic)
    return path


class TwoSensors(nn.Module):
    """A camera branch and a depth branch (different channel counts), two heads: several inputs and outputs."""

    def __init__(self):
        super().__init__()

        def branch(cin):
            return nn.Sequential(nn.Conv2d(cin, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                                 nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))

        self.rgb, self.depth, self.head = branch(3), branch(1), nn.Linear(32, 10)

    def forward(self, rgb, depth):
        a, b = self.rgb(rgb), self.depth(depth)
        return self.head(torch.cat([a.mean((2, 3)), b.mean((2, 3))], 1)), a + b


SHAPES = {"rgb": (1, 3, 24, 24), "depth": (1, 1, 24, 24)}
INPUT_SHAPES = ["--input-shape", "rgb=1,3,24,24", "--input-shape", "depth=1,1,24,24"]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    torch.manual_seed(0)
    src = save_onnx(TwoSensors(), (torch.randn(2, 3, 24, 24), torch.randn(2, 1, 24, 24)), d / "two sensors.onnx",
                    ["rgb", "depth"], ["logits", "fused"], dynamic={"rgb": {0: "n"}, "depth": {0: "n"}})
    target, manifest = export_onnx(src, OnnxExportConfig(output=d / "export", input_shapes=SHAPES, devices=2,
                                                         cost=CHEAP), **QUIET)
    return src, target, manifest


def reference(directory: Path, manifest) -> tuple[dict, dict]:
    ref = np.load(directory / "reference.npz")
    feeds = {t.name: ref[f"input{i}"] for i, t in enumerate(manifest.whole.inputs)}
    outs = {t.name: ref[f"output{i}"] for i, t in enumerate(manifest.whole.outputs)}
    return feeds, outs


def assert_outputs(got: dict, expected: dict, rtol: float = 1e-5) -> None:
    assert set(got) == set(expected)
    for name, ref in expected.items():
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(got[name], ref, rtol=rtol, atol=rtol * scale, err_msg=name)


def test_manifest_records_the_model_and_the_partition(two):
    src, target, manifest = two
    assert target.name == "two_sensors"  # the file's stem, made a valid name
    m = load_manifest(target)
    assert m.family == "onnx" and m.split == "auto" and m.precision == "fp32"
    assert m.model.source_sha256 == __import__("hashlib").sha256(src.read_bytes()).hexdigest()
    assert [(t.name, t.shape, t.dtype) for t in m.whole.inputs] == [("rgb", (1, 3, 24, 24), "float32"),
                                                                  ("depth", (1, 1, 24, 24), "float32")]
    assert [(t.name, t.shape) for t in m.whole.outputs] == [("logits", (1, 10)), ("fused", (1, 16, 24, 24))]
    p = m.partition
    assert p.devices == 2 and p.streams == 2 and p.predicted_speedup > 1.5 and p.launch_ms == CHEAP.launch_ms
    assert [s.name for s in p.subgraphs] == [s.name for s in m.subgraphs] and len(m.subgraphs) >= 2
    assert sum(s.share for s in p.subgraphs) == pytest.approx(1.0)
    assert m.dag.width == 2  # the two sensor branches run at once
    assert m.normalizations == () and m.verification["performed"] and m.verification["worst_max_rel"] <= 1e-5
    raw = json.loads((target / "manifest.json").read_text())
    assert raw["model"]["family"] == "onnx" and raw["partition"]["verdict"].startswith("split into 2 streams")
    assert sorted(raw["files"]) == sorted(["model.onnx", "reference.npz", *(f"{s.name}.onnx" for s in m.subgraphs)])
    with pytest.raises(UserError, match="not an image model with one normalized input"):
        m.normalization  # noqa: B018


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_several_inputs_and_outputs_run_on_every_cpu_backend(two, backend, mode):
    _, target, manifest = two
    feeds, expected = reference(target, manifest)
    with runtime.load(target, backend=backend, mode=mode) as run:
        assert_outputs(run.infer(feeds), expected)
        with pytest.raises(UserError, match=r"has 2 inputs \('rgb', 'depth'\); call runner.infer"):
            run(feeds["rgb"])
        with pytest.raises(UserError, match=r"expected the inputs \['depth', 'rgb'\], got \['rgb'\]"):
            run.infer({"rgb": feeds["rgb"]})
        with pytest.raises(UserError, match="input 'depth' dtype must be float32, got float64"):
            run.infer({**feeds, "depth": feeds["depth"].astype(np.float64)})
        with pytest.raises(UserError, match=r"input 'depth' shape must be \(1, 1, 24, 24\), got \(1, 1, 24, 23\)"):
            run.infer({**feeds, "depth": np.zeros((1, 1, 24, 23), np.float32)})


def test_built_engines_and_the_benchmark_run_it(two, tmp_path):
    _, target, manifest = two
    feeds, expected = reference(target, manifest)
    for backend in ("onnxruntime", "openvino", "auto"):  # auto: both measured, the faster kept
        engines, em = build_engines(target, BuildConfig(backend=backend, output=tmp_path / backend,
                                                        measure_iterations=3), log=lambda _: None)
        assert (backend == "auto") == bool(em.selection)
        with runtime.load(engines, mode="streams") as run:
            assert_outputs(run.infer(feeds), expected)
    result = bench_engine(tmp_path / "onnxruntime" / target.name, mode="streams",
                          timing=TimingConfig(warmup_s=0.0, min_iterations=5, min_duration_s=0.0), log=lambda _: None)
    assert [s.name for s in result.stages] == [s.name for s in manifest.subgraphs]


def test_distributed_gloo_with_several_inputs_and_outputs(two):
    """Each rank runs its stream; an input another rank reads is broadcast, outputs come back to rank 0."""
    _, target, manifest = two
    feeds, expected = reference(target, manifest)
    with runtime.load(target, mode="distributed", timeout_s=60) as run:
        plan = run.executor.plan
        assert plan.world == 2 and plan.broadcast_inputs  # the other rank reads one of the sensors
        for _ in range(2):
            assert_outputs(run.infer(feeds), expected)


def test_a_chain_is_not_split_and_says_why(tmp_path):
    chain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    src = save_onnx(chain, (torch.randn(1, 3, 16, 16),), tmp_path / "chain.onnx", ["x"], ["y"])
    lines = []
    target, m = export_onnx(src, OnnxExportConfig(output=tmp_path / "export", devices=3, cost=CHEAP),
                            log=lines.append)
    assert "verdict: not split: the graph is one chain" in "\n".join(lines)
    assert m.split == "none" and [(s.name, s.file) for s in m.subgraphs] == [("whole", "model.onnx")]
    assert m.partition.streams == 1 and m.partition.predicted_speedup == pytest.approx(1.0)
    feeds, expected = reference(target, load_manifest(target))
    with runtime.load(target, mode="streams") as run:
        assert_outputs({"y": run(feeds["x"])}, expected)


def test_costly_launches_keep_branches_whole_and_split_none_skips_the_search(two, tmp_path):
    src, _, _ = two
    _, m = export_onnx(src, OnnxExportConfig(output=tmp_path, name="costly", input_shapes=SHAPES, devices=2,
                                             cost=COSTLY), **QUIET)
    assert m.split == "none" and len(m.subgraphs) == 1 and "not split" in m.partition.verdict
    _, m = export_onnx(src, OnnxExportConfig(output=tmp_path, name="none", input_shapes=SHAPES, split="none"), **QUIET)
    assert m.split == "none" and m.partition is None


def test_parnet_streams_rediscovered_from_its_onnx(tmp_path):
    torch.manual_seed(0)
    model = reparameterize(randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY)))
    src = save_onnx(model, (torch.randn(1, 3, 64, 64),), tmp_path / "parnet.onnx", ["image"], ["logits"])
    _, m = export_onnx(src, OnnxExportConfig(output=tmp_path / "export", devices=3,
                                             cost=CostModel(launch_ms=0.02, gflops_per_s=50.0, gbytes_per_s=10.0)),
                       **QUIET)
    assert m.partition.streams == 3 and m.dag.width == 3 and m.verification["performed"]
    assert sorted({s.stream for s in m.subgraphs} - {None}) == [0, 1, 2]


# -- the command line: untrusted files refused in one line, exit 2, nothing written ------------------


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parnet_deploy.cli.export", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _external_data(d: Path) -> Path:
    w = onnx.numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")  # raw bytes: what goes external
    model = helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w]),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, d / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True, location="ext.bin",
              size_threshold=0)
    return d / "ext.onnx"


def _truncated(d: Path) -> Path:
    data = (d / "two.onnx").read_bytes()
    (d / "cut.onnx").write_bytes(data[: len(data) // 2])
    return d / "cut.onnx"


def _checker_rejects(d: Path) -> Path:
    model = helper.make_model(helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "g",
                                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])]),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, d / "bad.onnx")
    return d / "bad.onnx"


@pytest.mark.parametrize("make, extra, message", [
    (_external_data, [], "external data"),
    (_truncated, [], "cut.onnx"),
    (lambda d: d / "two.onnx", ["--input-shape", "rgb=1,3,24,24"], "'depth'"),
    (_checker_rejects, [], "NoSuchOp"),
    (lambda d: d / "two.onnx", ["--resolution", "64"], "--resolution: ParNet checkpoints only"),
    (lambda d: d / "two.onnx", ["--split", "shared"], "--split shared: ParNet checkpoints only"),
    (lambda d: d / "two.onnx", ["--devices", "0"], "--devices must be in 1..16"),
    (lambda d: d / "missing.onnx", [], "missing.onnx"),
    (lambda d: d / "two.onnx", ["--normalization", "depth=0.5,0.5,0.5/0.2,0.2,0.2"] + INPUT_SHAPES,
     "normalization of 'depth' has 3 channels; the input is [1, 1, 24, 24]"),
    (lambda d: d / "two.onnx", ["--normalization", "rgb=0.5,0.5,0.5"] + INPUT_SHAPES, "expected NAME=MEAN,.../STD,..."),
    (lambda d: d / "two.onnx", ["--normalization", "rgb=0,0,0/0,1,1"] + INPUT_SHAPES,
     "expected numbers in [1e-6, 1000]"),
])
def test_untrusted_or_wrong_input_is_one_line_exit_2_nothing_written(two, tmp_path, make, extra, message):
    src, _, _ = two
    (tmp_path / "two.onnx").write_bytes(src.read_bytes())
    path = make(tmp_path)
    r = cli(path, *extra, "--name", "out", "--output", tmp_path / "export", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and message in r.stderr, r.stderr
    assert not (tmp_path / "export" / "out").exists() and not list((tmp_path).glob("export/.*"))


def test_cli_exports_with_the_measured_cost_model_and_prints_why(two, tmp_path):
    src, _, _ = two
    r = cli(src, *INPUT_SHAPES, "--devices", "2", "--normalization", "rgb=0.485,0.456,0.406/0.229,0.224,0.225",
            "--output", tmp_path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "predicted: whole" in r.stdout and "verdict: " in r.stdout and "verification passed" in r.stdout
    m = load_manifest(tmp_path / "two_sensors")
    assert m.partition.launch_ms > 0 and m.partition.devices == 2
    [norm] = m.normalizations
    assert norm.input == "rgb" and norm.mean == (0.485, 0.456, 0.406) and norm.std == (0.229, 0.224, 0.225)


def test_any_torch_module_through_the_python_api(tmp_path):
    from parnet_deploy.export import export_module

    torch.manual_seed(0)
    module = TwoSensors()
    rgb, depth = torch.randn(*SHAPES["rgb"]), torch.randn(*SHAPES["depth"])
    target, m = export_module(module, (rgb, depth), OnnxExportConfig(output=tmp_path, devices=2, cost=CHEAP),
                              input_names=["rgb", "depth"], output_names=["logits", "fused"], **QUIET)
    assert target.name == "TwoSensors" and m.split == "auto" and m.partition.streams == 2
    with torch.no_grad():
        logits, fused = module(rgb, depth)
    with runtime.load(target, mode="streams") as run:
        out = run.infer({"rgb": rgb.numpy(), "depth": depth.numpy()})
    assert_outputs(out, {"logits": logits.numpy(), "fused": fused.numpy()})
    with pytest.raises(UserError, match="expected a torch.nn.Module, got str"):
        export_module("resnet", (rgb,), OnnxExportConfig(output=tmp_path, cost=CHEAP), **QUIET)


def test_parnet_quantize_takes_a_multi_input_export(two, tmp_path):
    from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export

    _, target, manifest = two
    rng = np.random.default_rng(1)
    calib = tmp_path / "calib.npz"
    np.savez(calib, rgb=rng.standard_normal((8, 3, 24, 24)).astype(np.float32),
             depth=rng.standard_normal((8, 1, 24, 24)))  # float64: converted to the input's float32
    int8, m = quantize_export(target, QuantizeConfig(calib=str(calib), max_drop=20, output=tmp_path), **QUIET)
    q = m.quantization
    assert m.precision == "int8" and m.family == "onnx" and q.top1_fp32 is None and q.drop_points <= 20
    assert q.agreement == pytest.approx(1 - q.drop_points / 100)
    assert [s.name for s in m.subgraphs] == [s.name for s in manifest.subgraphs]
    feeds, expected = reference(target, manifest)
    for backend in ("onnxruntime", "openvino"):
        with runtime.load(int8, backend=backend, mode="streams") as run:
            out = run.infer(feeds)
        for name, ref in expected.items():  # int8: close to fp32, not equal
            err = np.linalg.norm(out[name] - ref) / np.linalg.norm(ref)
            assert err < 0.2, (backend, name, err)
    np.savez(tmp_path / "bad.npz", rgb=np.zeros((8, 3, 24, 24), np.float32))
    with pytest.raises(UserError, match=r"no array for the inputs \['depth'\]"):
        quantize_export(target, QuantizeConfig(calib=str(tmp_path / "bad.npz"), output=tmp_path, name="bad"), **QUIET)
    with pytest.raises(UserError, match="takes an .npz with one array per input"):
        quantize_export(target, QuantizeConfig(calib="digits", output=tmp_path, name="bad"), **QUIET)


def test_int64_and_bool_tensors_end_to_end(tmp_path):
    """An index input (int64) and a mask output (bool) beside floats: exported, built and run as they are."""
    node = helper.make_node
    w = onnx.numpy_helper.from_array(np.linspace(-1, 1, 40, dtype=np.float32).reshape(10, 4), "table")
    graph = helper.make_graph(
        [node("Gather", ["table", "idx"], ["rows"], axis=0), node("Relu", ["x"], ["rx"]),
         node("Add", ["rows", "rx"], ["y"]), node("Greater", ["y", "zero"], ["positive"])], "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4]),
         helper.make_tensor_value_info("positive", TensorProto.BOOL, [1, 3, 4])],
        [w, onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    src = tmp_path / "mixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), src)
    target, m = export_onnx(src, OnnxExportConfig(output=tmp_path / "export", cost=CHEAP), **QUIET)
    assert [(t.name, t.dtype) for t in m.whole.inputs] == [("x", "float32"), ("idx", "int64")]
    assert [(t.name, t.dtype) for t in m.whole.outputs] == [("y", "float32"), ("positive", "bool")]
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    idx = np.array([[9, 0, 4]], np.int64)
    y = np.linspace(-1, 1, 40, dtype=np.float32).reshape(10, 4)[idx] + np.maximum(x, 0)
    for backend in ("onnxruntime", "openvino"):
        with runtime.load(target, backend=backend, mode="streams") as run:
            out = run.infer({"x": x, "idx": idx})
            with pytest.raises(UserError, match="input 'idx' dtype must be int64, got int32"):
                run.infer({"x": x, "idx": idx.astype(np.int32)})
        np.testing.assert_allclose(out["y"], y, rtol=1e-6, err_msg=backend)
        assert out["positive"].dtype == np.bool_ and np.array_equal(out["positive"], y > 0), backend


def test_an_op_tensorrt_cannot_parse_is_noted_not_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], axis=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    src = tmp_path / "hardmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), src)
    lines = []
    target, m = export_onnx(src, OnnxExportConfig(output=tmp_path, cost=CHEAP), log=lines.append)
    assert m.verification["tensorrt_op_gate"].startswith("ops Hardmax are not in onnx/onnx-tensorrt")
    assert any(line.startswith("note: ops Hardmax") and "--backend tensorrt would refuse it" in line for line in lines)
    with runtime.load(target) as run:
        assert np.array_equal(run(np.array([[0.1, 3.0, -1.0, 2.0]], np.float32)), [[0, 1, 0, 0]])
    _, two_manifest = export_onnx(tmp_path / "hardmax.onnx", OnnxExportConfig(output=tmp_path, name="again",
                                                                              split="none"), **QUIET)
    assert two_manifest.verification["tensorrt_op_gate"].startswith("ops Hardmax")


# -- --batch on a user's model --------------------------------------------------------------------

def test_a_dynamic_batch_on_a_split_onnx_model(two, tmp_path):
    src = two[0]
    target, m = export_onnx(src, OnnxExportConfig(output=tmp_path, name="dyn", input_shapes=SHAPES, devices=2,
                                                  cost=CHEAP, batch=(1, 3)), **QUIET)
    assert m.split == "auto" and len(m.subgraphs) > 1 and m.batch == BatchDim(1, 3)
    assert all(t.batch == m.batch for s in (m.whole, *m.subgraphs) for t in (*s.inputs, *s.outputs))
    assert m.model.inputs == m.whole.inputs and m.verification["passed"]
    rng = np.random.default_rng(4)
    feeds = {"rgb": rng.standard_normal((3, 3, 24, 24)).astype(np.float32),
             "depth": rng.standard_normal((3, 1, 24, 24)).astype(np.float32)}
    for backend in ("onnxruntime", "openvino"):
        for mode in ("whole", "streams"):
            with runtime.load(target, backend=backend, mode=mode, threads=2) as r:
                full = r.infer(feeds)
                for k in range(3):
                    row = r.infer({n: x[k:k + 1] for n, x in feeds.items()})
                    for name in ("logits", "fused"):
                        np.testing.assert_allclose(full[name][k:k + 1], row[name], rtol=1e-5,
                                                   atol=1e-5 * np.abs(full[name]).max())
                with pytest.raises(UserError, match=r"batch 4 is outside the bounds 1\.\.3"):
                    r.infer({n: np.concatenate([x, x[:1]]) for n, x in feeds.items()})
                with pytest.raises(UserError, match=r"the inputs disagree on the batch"):
                    r.infer({"rgb": feeds["rgb"], "depth": feeds["depth"][:2]})
    # calibration and the gate read an .npz of samples in batches of up to 3 (8 samples: 3, 3, 2)
    from parnet_deploy.precision.quantize import QuantizeConfig, quantize_export

    calib = tmp_path / "calib.npz"
    np.savez(calib, rgb=rng.standard_normal((8, 3, 24, 24)).astype(np.float32),
             depth=rng.standard_normal((8, 1, 24, 24)).astype(np.float32))
    _, q = quantize_export(target, QuantizeConfig(calib=str(calib), max_drop=20, output=tmp_path), **QUIET)
    assert q.batch == BatchDim(1, 3) and q.precision == "int8" and q.quantization.drop_points <= 20


class BakedBatch(nn.Module):
    """Flattens with a constant batch of 1: its batch cannot change."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).reshape(1, -1)


def test_batch_refusals_on_onnx_models(tmp_path):
    baked = save_onnx(BakedBatch(), (torch.zeros(1, 3, 8, 8),), tmp_path / "baked.onnx", ["x"], ["y"],
                      dynamic={"x": {0: "n"}})
    with pytest.raises(UserError, match=r"output 'y' comes out as \[1, .*\] with a dynamic batch.*bakes its batch in"):
        export_onnx(baked, OnnxExportConfig(output=tmp_path / "out", batch=(1, 2), split="none"), **QUIET)
    static = save_onnx(BakedBatch(), (torch.zeros(1, 3, 8, 8),), tmp_path / "static.onnx", ["x"], ["y"])
    with pytest.raises(UserError, match=r"input 'x' has a static batch of 1; --batch needs dim 0 dynamic"):
        export_onnx(static, OnnxExportConfig(output=tmp_path / "out", batch=(2, 2), split="none"), **QUIET)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
