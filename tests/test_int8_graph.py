"""The one int8 Q/DQ graph (precision/int8.py) and ONNX Runtime's exact uint8 rewrite (backends/onnxruntime/qdq.py).

Self-contained: the fp32 model is built here with onnx.helper (conv stem, a residual Add, an SE gate
GlobalAveragePool -> 1x1 Conv -> Sigmoid -> Mul, Flatten, Gemm), so nothing else of the package is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from parnet_deploy.backends.onnxruntime.qdq import has_s8_activations, to_u8_activations
from parnet_deploy.errors import UserError, VerificationError
from parnet_deploy.precision.int8 import LEVELS, Int8Config, quantize, quantize_until_accurate

try:
    from parnet_deploy.data import Dataset
except ImportError:  # pragma: no cover - the package mid-refactor: the quantizer only reads these fields
    class Dataset:  # type: ignore[no-redef]
        def __init__(self, images, labels, name):
            self.images, self.labels, self.name = images, labels, name

        def __len__(self):
            return len(self.images)


TINY_WEIGHT_CHANNEL = 3  # conv1's output channel with ~1e-6 weights and a bias of 1


def fp32_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def w(name, *shape, scale=0.3):
        return const(name, rng.standard_normal(shape) * scale)

    w1 = rng.standard_normal((8, 8, 3, 3)) * 0.2
    if TINY_WEIGHT_CHANNEL is not None:
        w1[TINY_WEIGHT_CHANNEL] *= 1e-6  # an almost dead channel: ORT would widen its scale for an int32 bias
    b1 = rng.standard_normal(8) * 0.1
    if TINY_WEIGHT_CHANNEL is not None:
        b1[TINY_WEIGHT_CHANNEL] = 1.0
    node = helper.make_node
    nodes = [
        node("Conv", ["image", w("w0", 8, 3, 3, 3), w("b0", 8, scale=0.1)], ["c0"], name="conv0",
             pads=[1] * 4, strides=[2, 2]),
        node("Relu", ["c0"], ["r0"], name="relu0"),
        node("Conv", ["r0", const("w1", w1), const("b1", b1)], ["c1"], name="conv1", pads=[1] * 4),
        node("Add", ["c1", "r0"], ["a1"], name="add1"),  # residual: r0 is the skip input
        node("Relu", ["a1"], ["r1"], name="relu1"),
        node("GlobalAveragePool", ["r1"], ["g1"], name="gap1"),  # SE gate on r1
        node("Conv", ["g1", w("wse", 8, 8, 1, 1), w("bse", 8, scale=0.1)], ["s1"], name="se_conv"),
        node("Sigmoid", ["s1"], ["sg1"], name="sigmoid1"),
        node("Mul", ["r1", "sg1"], ["m1"], name="mul1"),
        node("Conv", ["m1", w("w2", 16, 8, 3, 3, scale=0.2), w("b2", 16, scale=0.1)], ["c2"], name="conv2",
             pads=[1] * 4, strides=[2, 2]),
        node("Relu", ["c2"], ["r2"], name="relu2"),
        node("GlobalAveragePool", ["r2"], ["g2"], name="gap2"),
        node("Flatten", ["g2"], ["f2"], name="flatten"),
        node("Gemm", ["f2", w("wfc", 10, 16), w("bfc", 10, scale=0.1)], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny_parnet_like",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def flavors(tmp_path_factory):
    """(fp32, CPU flavor at LEVELS[0], TensorRT flavor, images); calibrated on 16 random-normal images."""
    tmp = tmp_path_factory.mktemp("int8")
    fp32 = fp32_model()
    onnx.save(fp32, tmp / "fp32.onnx")
    rng = np.random.default_rng(1)
    calib = Dataset(rng.standard_normal((16, 3, 16, 16)).astype(np.float32), None, "random")
    kept = quantize(tmp / "fp32.onnx", tmp / "int8.onnx", calib, Int8Config(calib_samples=16), LEVELS[0],
                    flavors={"tensorrt": tmp / "trt.onnx"})
    assert kept == ["conv0", "fc"]
    x = rng.standard_normal((8, 1, 3, 16, 16)).astype(np.float32)
    return fp32, onnx.load(tmp / "int8.onnx"), onnx.load(tmp / "trt.onnx"), x


@pytest.fixture(scope="module")
def graphs(flavors):
    """(fp32, TensorRT flavor: the symmetric int8 graph, images)"""
    fp32, _, trt, x = flavors
    return fp32, trt, x


def _inits(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def _readers(model, tensor):
    return [(n, i) for n in model.graph.node for i, t in enumerate(n.input) if t == tensor]


def _run(model, x, optimize=True):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.stack([s.run(None, {"image": xi})[0] for xi in x])


@pytest.mark.parametrize("flavor", ["cpu", "tensorrt"])
def test_8bit_graphs_without_quantized_biases(flavors, flavor):
    """TensorRT flavor: int8 activations with zero point 0; CPU flavors: uint8 (asymmetric, zero point 0 on
    ReLU outputs). Both: int8 weights, float biases, no int32 DequantizeLinear (TensorRT cannot parse it)."""
    _, cpu, trt, _ = flavors
    q = cpu if flavor == "cpu" else trt
    onnx.checker.check_model(q, full_check=True)
    inits = _inits(q)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    const_dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert const_dq and all(inits[n.input[0]].dtype == np.int8 for n in const_dq)
    producers = _producers(q)
    for n in q.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in inits:
            zp = inits[n.input[2]]
            assert zp.shape == () and zp.dtype == (np.uint8 if flavor == "cpu" else np.int8), n.name
            source = producers.get(n.input[0] if n.op_type == "QuantizeLinear" else producers[n.input[0]].input[0])
            if flavor == "tensorrt" or (source is not None and source.op_type == "Relu"):
                assert not zp.any(), n.name  # symmetric (TensorRT), or a non-negative tensor's full range
    for n in q.graph.node:
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 2:
            assert inits[n.input[2]].dtype == np.float32, n.name  # the bias stays a float initializer


@pytest.mark.parametrize("flavor, qmax", [("cpu", 64), ("tensorrt", 127)])
def test_weights_int8_per_output_channel(flavors, flavor, qmax):
    """scale = max|w| / qmax per output channel (the CPU flavor's weights are 7-bit: no int16 saturation on
    x86 without VNNI), except where bias / (input scale * weight scale) would overflow int32 (a near-dead
    channel next to a large bias): ORT widens that scale even with QuantizeBias=False, and must, because its
    session-time fusion turns the float bias into that int32."""
    fp32, cpu, trt, x = flavors
    q = cpu if flavor == "cpu" else trt
    w = _inits(fp32)
    inits = _inits(q)
    producers = _producers(q)
    checked = 0
    for n in q.graph.node:
        if n.op_type not in ("Conv", "Gemm") or n.input[1] not in producers:
            continue
        dq = producers[n.input[1]]
        assert dq.op_type == "DequantizeLinear"
        assert next((a.i for a in dq.attribute if a.name == "axis"), 1) == 0
        qw, scale, zp = (inits[t] for t in dq.input)
        assert qw.dtype == np.int8 and zp.dtype == np.int8 and not zp.any() and scale.shape == (len(qw),)
        original = w[dq.input[0].removesuffix("_quantized")]
        assert np.abs(qw.astype(np.int16)).max() <= qmax and np.abs(qw.astype(np.int16)).max() > qmax // 2
        full_range = np.abs(original.reshape(len(original), -1)).max(axis=1) / qmax
        bias = inits[n.input[2]]
        input_scale = inits[producers[n.input[0]].input[1]]
        int32_ok = np.abs(bias) / (input_scale * scale) < 2**31
        assert int32_ok.all(), n.name
        widened = ~np.isclose(scale, full_range, rtol=1e-6, atol=0)
        assert (scale[widened] > full_range[widened]).all()
        assert list(np.flatnonzero(widened)) == ([TINY_WEIGHT_CHANNEL] if n.name == "conv1" else []), n.name
        checked += 1
    assert checked == 2  # conv1, conv2 (first conv, SE conv and classifier: float)
    # and ORT's fused kernels (which turn the float bias into int32; an overflow was 30% off) compute what the
    # graph says, within requantization rounding
    ref = _run(q, x, optimize=False)
    np.testing.assert_allclose(_run(q, x), ref, rtol=0, atol=0.01 * np.abs(ref).max())


def _edges(q):
    """(consumer, input index) of every activation DequantizeLinear; asserts one consumer each (dedicated)."""
    inits = _inits(q)
    edges = []
    for n in q.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] not in inits:
            readers = _readers(q, n.output[0])
            assert len(readers) == 1, n.name  # a dedicated pair per consuming input
            edges.append((readers[0][0].name, readers[0][1]))
    assert len(edges) == len(set(edges))
    return set(edges)


def test_placement_inputs_only_dedicated_pairs_no_gate_outputs(flavors):
    _, q, _, _ = flavors  # the OpenVINO flavor
    producers = _producers(q)
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear":
            src = producers.get(n.input[0])
            assert src is None or src.op_type not in ("Sigmoid", "GlobalAveragePool"), n.name
            readers = _readers(q, n.output[0])
            assert len(readers) == 1 and readers[0][0].op_type == "DequantizeLinear"
    # level 0: Conv/Gemm activation inputs, both Add inputs, Mul's activation input (not the Sigmoid's), the
    # pools' inputs; first conv, SE conv (pooled input) and classifier in float.
    assert _edges(q) == {("conv1", 0), ("conv2", 0), ("add1", 0), ("add1", 1), ("mul1", 0), ("gap1", 0), ("gap2", 0)}
    by_name = {n.name: n for n in q.graph.node}
    for name in ("conv0", "se_conv", "sigmoid1", "fc"):
        node = by_name[name]
        assert all(producers.get(t) is None or producers[t].op_type != "DequantizeLinear" for t in node.input), name
    assert by_name["mul1"].input[1] == "sg1"


def test_tensorrt_flavor_follows_tensorrt_guidance(flavors):
    """Weighted ops' inputs and the residual input of each Add only: a pair on the conv-produced input c1 would
    stop TensorRT fusing add1 into conv1 (its Q/DQ placement guide; NVIDIA ModelOpt places the same)."""
    fp32, cpu, trt, x = flavors
    onnx.checker.check_model(trt, full_check=True)
    assert _edges(trt) == {("conv1", 0), ("conv2", 0), ("add1", 1)}
    assert {n.name: n for n in trt.graph.node}["add1"].input[0] == "c1"
    # one calibration: on a ReLU output (range [0, max]) int8 symmetric and uint8 cover the same range
    def scales(q):
        inits, producers = _inits(q), _producers(q)
        return {(n.name, i): float(inits[producers[t].input[1]]) for n in q.graph.node for i, t in enumerate(n.input)
                if t in producers and producers[t].op_type == "DequantizeLinear" and producers[t].input[0] not in inits}
    cpu_scales, trt_scales = scales(cpu), scales(trt)
    for edge in (("conv1", 0), ("add1", 1)):  # both read r0 = Relu(c0)
        assert trt_scales[edge] * 127 == pytest.approx(cpu_scales[edge] * 255, rel=1e-6)
    ref = _run(fp32, x)
    assert np.abs(_run(trt, x, optimize=False) - ref).max() < 0.05 * np.abs(ref).max()


def test_every_level_keeps_the_invariants(tmp_path):
    onnx.save(fp32_model(), tmp_path / "fp32.onnx")
    calib = Dataset(np.random.default_rng(2).standard_normal((4, 3, 16, 16)).astype(np.float32), None, "r")
    counts = []
    for level in LEVELS:
        kept = quantize(tmp_path / "fp32.onnx", tmp_path / "q.onnx", calib, Int8Config(calib_samples=4), level)
        q = onnx.load(tmp_path / "q.onnx")
        onnx.checker.check_model(q, full_check=True)
        inits = _inits(q)
        assert all(inits[n.input[0]].dtype == np.int8 for n in q.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in inits)
        assert all(inits[n.input[2]].dtype == np.uint8 for n in q.graph.node if n.op_type == "QuantizeLinear")
        producers = _producers(q)
        for name in kept:  # kept in float: no DequantizeLinear feeds it
            node = next(n for n in q.graph.node if n.name == name)
            assert all(producers.get(t) is None or producers[t].op_type != "DequantizeLinear" for t in node.input)
        counts.append(sum(n.op_type == "QuantizeLinear" for n in q.graph.node))
    assert counts == sorted(counts, reverse=True)  # each level keeps more in float than the one before


def test_u8_rewrite_is_exact_and_leaves_weights_int8(graphs):
    fp32, q, x = graphs
    assert has_s8_activations(q) and not has_s8_activations(fp32)
    u = to_u8_activations(q)
    onnx.checker.check_model(u, full_check=True)
    assert has_s8_activations(q)  # the input model is not modified
    assert not has_s8_activations(u)
    ui = _inits(u)
    q_nodes = {n.name: n for n in q.graph.node}
    for n in u.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in ui:  # weights: untouched, int8
            assert list(n.input) == list(q_nodes[n.name].input) and ui[n.input[0]].dtype == np.int8
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):  # activations: uint8, zero point 128, same scale
            zp = ui[n.input[2]]
            assert zp.dtype == np.uint8 and zp.shape == () and int(zp) == 128, n.name
            assert n.input[1] == q_nodes[n.name].input[1]
    q_outputs = {n.output[0] for n in u.graph.node if n.op_type == "QuantizeLinear"}
    assert q_outputs and all(v.type.tensor_type.elem_type == TensorProto.UINT8
                             for v in u.graph.value_info if v.name in q_outputs)
    assert [n.op_type for n in u.graph.node] == [n.op_type for n in q.graph.node]

    # Same real values by construction (q_u8 = q_s8 + 128, zero point 128): with ORT's graph optimizations
    # off (reference QuantizeLinear / DequantizeLinear / Conv kernels) the outputs are bit-identical.
    np.testing.assert_array_equal(_run(u, x, optimize=False), _run(q, x, optimize=False))
    # With them on (what the backend runs) ORT fuses u8s8 QLinearConv for one graph and s8s8 for the other,
    # and turns the float biases into int32. Tolerance 1e-4 of the output range: far below one int8 step of
    # any activation (>= 1/127 of its range), so a value landing in a different quantization bin would fail.
    # (Observed here: bit-identical. On ParNet-S 224 both fused paths sit ~1e-3 of the range from the
    # reference kernels, s8 and u8 alike, and 9e-4 from each other: requantization rounding.)
    # Without VNNI, the u8s8 kernels (vpmaddubsw) add pairs of products into int16 with saturation: the
    # CPU flavor's 7-bit weights keep every pair in range, so this holds on every x86 CPU.
    ref = _run(q, x)
    np.testing.assert_allclose(_run(u, x), ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    # and the int8 graph is a close approximation of fp32 at all
    f = _run(fp32, x)
    assert np.abs(ref - f).max() < 0.05 * np.abs(f).max()


def saturating_model() -> onnx.ModelProto:
    """conv1 reads a ReLU output with weights all equal: every pair of uint8 x int8 products is at its largest."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w0", np.abs(rng.standard_normal((16, 3, 1, 1)))), ("b0", np.zeros(16)),
        ("w1", np.full((4, 16, 1, 1), 0.5)), ("b1", np.zeros(4)),
        ("wfc", rng.standard_normal((2, 4))), ("bfc", np.zeros(2))]]
    node = helper.make_node
    nodes = [node("Conv", ["image", "w0", "b0"], ["c0"], name="conv0"), node("Relu", ["c0"], ["r0"], name="relu0"),
             node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1"), node("Relu", ["c1"], ["r1"], name="relu1"),
             node("GlobalAveragePool", ["r1"], ["g"], name="gap"), node("Flatten", ["g"], ["f"], name="flatten"),
             node("Gemm", ["f", "wfc", "bfc"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "saturating",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _has_vnni() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def test_cpu_flavor_runs_as_the_graph_says_on_the_fused_kernels(tmp_path):
    """No int16 saturation: ONNX Runtime's u8s8 kernels and OpenVINO compute the CPU flavor's Q/DQ graph as
    ORT's reference kernels (optimizations off) do, within requantization rounding. x86 without VNNI adds
    pairs of uint8 x int8 products into int16 with saturation: the 8-bit weights of the TensorRT flavor
    (for TensorRT, which accumulates in int32) come out wrong there, which shows the test bites."""
    import openvino as ov

    onnx.save(saturating_model(), tmp_path / "fp32.onnx")
    x = np.abs(np.random.default_rng(6).standard_normal((4, 1, 3, 8, 8))).astype(np.float32) * 4
    calib = Dataset(x[:, 0], None, "same images")
    quantize(tmp_path / "fp32.onnx", tmp_path / "cpu.onnx", calib, Int8Config(calib_samples=4), LEVELS[0],
             flavors={"tensorrt": tmp_path / "trt.onnx"})
    core = ov.Core()
    for flavor in ("cpu", "trt"):
        q = onnx.load(tmp_path / f"{flavor}.onnx")
        assert ("conv1", 0) in _edges(q)
        ref = _run(q, x, optimize=False)
        compiled = core.compile_model(str(tmp_path / f"{flavor}.onnx"), "CPU", {"INFERENCE_NUM_THREADS": "1"})
        errors = [np.abs(_run(to_u8_activations(q), x) - ref).max(),
                  np.abs(np.stack([compiled(xi)[0] for xi in x]) - ref).max()]
        tol = 0.01 * np.abs(ref).max()
        if flavor == "cpu":
            assert max(errors) < tol, errors
        elif not _has_vnni():
            assert max(errors) > 10 * tol, errors  # OpenVINO saturates here (ORT did on the digits model)


def test_u8_rewrite_leaves_a_graph_without_s8_pairs_alone(graphs):
    fp32, q, _ = graphs
    u = to_u8_activations(q)
    assert to_u8_activations(u).SerializeToString() == u.SerializeToString()
    assert to_u8_activations(fp32).SerializeToString() == fp32.SerializeToString()


def test_accuracy_gate_walks_the_levels(tmp_path):
    onnx.save(fp32_model(), tmp_path / "fp32.onnx")
    calib = Dataset(np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32), None, "r")
    seen, log = [], []

    def accept_second(path):
        seen.append(path)
        return len(seen) == 2, f"try {len(seen)}"

    level, kept, summary = quantize_until_accurate(tmp_path / "fp32.onnx", tmp_path / "q.onnx", calib,
                                                   Int8Config(calib_samples=2), accept_second, log.append)
    assert level == LEVELS[1] and summary == "try 2" and len(log) == 2 and "accepted" in log[-1]
    with pytest.raises(VerificationError, match="every quantization level"):
        quantize_until_accurate(tmp_path / "fp32.onnx", tmp_path / "q.onnx", calib, Int8Config(calib_samples=2),
                                lambda p: (False, "no"), lambda _: None)


def test_config_has_no_flavor():
    Int8Config().validate()
    with pytest.raises(UserError, match="unknown calibration method"):
        Int8Config(method="mse").validate()
    with pytest.raises(TypeError):
        Int8Config(flavor="tensorrt")  # type: ignore[call-arg]


def test_cuts_that_every_reader_quantizes_cross_quantized(flavors):
    """rewrite.quantize_boundaries: r0 and r1 (read only through pairs of one scale) become one
    QuantizeLinear's uint8 output under their own names; sg1 (read by the float Mul input) stays float. Cut
    there, the parts compose to exactly the whole graph, which computes exactly what it did before."""
    from parnet_deploy.export.graph import cut
    from parnet_deploy.precision.rewrite import quantize_boundaries

    _, q, _, x = flavors
    before = {n.name for n in q.graph.node}
    rewritten, crossed = quantize_boundaries(q, ["r0", "r1", "sg1", "logits", "no_such_tensor"])
    assert crossed == {"r0": "uint8", "r1": "uint8"}
    onnx.checker.check_model(rewritten, full_check=True)
    producers = _producers(rewritten)
    for name in crossed:
        assert producers[name].op_type == "QuantizeLinear" and producers[name].input[0] == f"{name}_float"
        assert {n.op_type for n, _ in _readers(rewritten, name)} == {"DequantizeLinear"}
    assert len(_readers(rewritten, "r1")) == 2 and not _readers(rewritten, "sg1")[0][0].op_type.endswith("Linear")
    assert sum(n.op_type == "QuantizeLinear" for n in rewritten.graph.node) < sum(
        n.op_type == "QuantizeLinear" for n in q.graph.node)  # the dedicated Qs of r0 and r1 became one each
    assert {n.name for n in rewritten.graph.node} <= before
    rewritten = onnx.shape_inference.infer_shapes(rewritten)
    head = cut(rewritten, ["image"], ["r1"], "head")
    tail = cut(rewritten, ["r1"], ["logits"], "tail")
    assert head.graph.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    whole = _run(rewritten, x, optimize=False)
    np.testing.assert_array_equal(whole, _run(q, x, optimize=False))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    h, t = (ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]) for m in (head, tail))
    parts = np.stack([t.run(None, {"r1": h.run(None, {"image": xi})[0]})[0] for xi in x])
    np.testing.assert_array_equal(parts, whole)


def test_onnxruntime_runs_int8_cuts_as_uint8_and_gives_int8(graphs, tmp_path):
    """The backend's u8 rewrite takes a subgraph's int8 input and output as uint8 (+128); the runner converts
    at the edge, so the manifest's int8 goes in and comes out, with the same values as the whole graph."""
    from parnet_deploy.artifacts.export_manifest import SubgraphSpec, TensorSpec
    from parnet_deploy.backends import get_backend
    from parnet_deploy.export.graph import cut
    from parnet_deploy.precision.rewrite import quantize_boundaries

    _, q, x = graphs  # the TensorRT flavor: int8; r0 is read by conv1 and add1, both through pairs
    rewritten, crossed = quantize_boundaries(q, ["r0"])
    assert crossed == {"r0": "int8"}
    rewritten = onnx.shape_inference.infer_shapes(rewritten)
    onnx.save(cut(rewritten, ["image"], ["r0"], "head"), tmp_path / "head.onnx")
    onnx.save(cut(rewritten, ["r0"], ["logits"], "tail"), tmp_path / "tail.onnx")
    assert not has_s8_activations(to_u8_activations(onnx.load(tmp_path / "tail.onnx")))
    r1 = TensorSpec("r0", (1, 8, 8, 8), "int8")
    backend = get_backend("onnxruntime", threads=1)
    head = backend.load(tmp_path / "head.onnx", SubgraphSpec("head", "head.onnx",
                                                             (TensorSpec("image", (1, 3, 16, 16), "float32"),), (r1,)))
    tail = backend.load(tmp_path / "tail.onnx", SubgraphSpec("tail", "tail.onnx", (r1,),
                                                             (TensorSpec("logits", (1, 10), "float32"),)))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference_head = ort.InferenceSession(str(tmp_path / "head.onnx"), so, providers=["CPUExecutionProvider"])
    for xi in x:
        mid = head.infer({"image": xi})["r0"]
        assert mid.dtype == np.int8 and mid.min() >= 0  # r0 is a ReLU output: int8 0..127, not uint8 128..255
        ref = reference_head.run(None, {"image": xi})[0]  # int8, ORT's reference kernels
        assert np.abs(mid.astype(np.int16) - ref).max() <= 1  # requantization rounding at most
        np.testing.assert_array_equal(tail.infer({"r0": mid})["logits"],
                                      _run(to_u8_activations(rewritten), xi[None])[0])


def _moved_model(*, concat_read_twice: bool = False, constant_leaf: bool = False, per_channel: bool = False
                 ) -> onnx.ModelProto:
    """Two ReLU streams ra, rb stacked and interleaved (Unsqueeze -> Concat -> Reshape, the Fusion's shuffle)
    into one quantizer, then a Conv; rb is also read by an Add. Hand-built Q/DQ: scale 0.05, zero point 0."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(a, n) for n, a in {
        "wa": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "wb": rng.standard_normal((4, 3, 3, 3)).astype(
            np.float32), "wc": rng.standard_normal((2, 8, 1, 1)).astype(np.float32),
        "axis": np.array([2], np.int64), "shape": np.array([1, 8, 8, 8], np.int64),
        "scale": np.full(8, 0.05, np.float32) if per_channel else np.array(0.05, np.float32),
        "zp": np.zeros(8, np.uint8) if per_channel else np.array(0, np.uint8),
        "k": np.ones((1, 4, 1, 8, 8), np.float32),
    }.items()]
    node = helper.make_node
    nodes = [node("Conv", ["image", "wa"], ["ca"], name="conva", pads=[1] * 4),
             node("Relu", ["ca"], ["ra"], name="relua"),
             node("Conv", ["image", "wb"], ["cb"], name="convb", pads=[1] * 4),
             node("Relu", ["cb"], ["rb"], name="relub"),
             node("Add", ["rb", "rb"], ["side"], name="side_add"),
             node("Unsqueeze", ["ra", "axis"], ["ua"], name="unsq_a"),
             *([] if constant_leaf else [node("Unsqueeze", ["rb", "axis"], ["ub"], name="unsq_b")]),
             node("Concat", ["ua", "k" if constant_leaf else "ub"], ["stack"], name="stack", axis=2),
             node("Reshape", ["stack", "shape"], ["shuffled"], name="shuffle"),
             node("QuantizeLinear", ["shuffled", "scale", "zp"], ["q"], name="q_shuffled", axis=1),
             node("DequantizeLinear", ["q", "scale", "zp"], ["dq"], name="dq_shuffled", axis=1),
             node("Conv", ["dq", "wc"], ["out"], name="convc")]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 8, 8]),
               helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 4, 8, 8])]
    if concat_read_twice:
        nodes.append(node("ReduceMax", ["stack"], ["peek"], name="peek", keepdims=0))
        outputs.append(helper.make_tensor_value_info("peek", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, "moved", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                              [1, 3, 8, 8])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_quantize_before_movement_moves_the_pair_above_concat_and_reshape():
    """rewrite.quantize_before_movement: ra and rb enter the Unsqueeze -> Concat -> Reshape tree through a
    pair with the tree's quantizer's scale and zero point (rb's Add still reads it in float); the outputs are
    bitwise what they were (moving data commutes with one scale, and Q(DQ(q)) = q); ra then crosses a cut as
    uint8 (rewrite.quantize_boundaries), as a ParNet stream's output does."""
    from parnet_deploy.precision.rewrite import quantize_before_movement, quantize_boundaries

    before = _moved_model()
    after = quantize_before_movement(before)
    onnx.checker.check_model(after, full_check=True)
    producers, inits = _producers(after), _inits(after)
    for reader, tensor in (("unsq_a", "ra"), ("unsq_b", "rb")):
        dq = producers[next(n for n in after.graph.node if n.name == reader).input[0]]
        q = producers[dq.input[0]]
        assert (dq.op_type, q.op_type, q.input[0]) == ("DequantizeLinear", "QuantizeLinear", tensor)
        for node in (q, dq):
            assert float(inits[node.input[1]]) == np.float32(0.05) and inits[node.input[2]].dtype == np.uint8
            assert int(inits[node.input[2]]) == 0
    assert {n.name for n, _ in _readers(after, "rb") if n.op_type != "QuantizeLinear"} == {"side_add"}
    assert sum(n.op_type == "QuantizeLinear" for n in after.graph.node) == 3
    x = np.random.default_rng(4).standard_normal((6, 1, 3, 8, 8)).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = [ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
                for m in (before, after)]
    for xi in x:
        a, b = (s.run(None, {"image": xi}) for s in sessions)
        assert a[0].std() > 0
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    _, crossed = quantize_boundaries(after, ["ra", "rb"])
    assert crossed == {"ra": "uint8"}  # rb is also read by the float Add


@pytest.mark.parametrize("variant", ["concat_read_twice", "constant_leaf", "per_channel"])
def test_quantize_before_movement_leaves_a_tree_read_elsewhere_or_fed_a_constant(variant):
    """A tensor inside the tree read by something else (it would see quantized values), a constant leaf (no
    activation to quantize) or a per-channel quantizer (the Concat and Reshape move channels): the graph is
    left as it was."""
    from parnet_deploy.precision.rewrite import quantize_before_movement

    before = _moved_model(**{variant: True})
    after = quantize_before_movement(before)
    assert [n.op_type for n in after.graph.node].count("QuantizeLinear") == 1
    assert sorted(n.name for n in after.graph.node) == sorted(n.name for n in before.graph.node)
