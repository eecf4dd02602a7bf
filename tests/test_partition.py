"""Partitioning any multi-branch ONNX model: ParNet's streams rediscovered, chains and one-device runs
left whole, real architectures nobody here wrote cut and recomposed exactly, and a bounded search."""

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import TINY, randomize_bn
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import parnet_deploy as pd
from parnet_deploy.errors import UserError
from parnet_deploy.partition import (
    CostModel,
    OpGraph,
    OpNode,
    Partition,
    compose,
    cut_model,
    find_partition,
    partition_graph,
    why_table,
)
from parnet_deploy.reparam import reparameterize

# fixed numbers, so the decisions do not depend on this machine: a launch costs about one small conv
COST = CostModel(launch_ms=0.02, gflops_per_s=50.0, gbytes_per_s=10.0)


def to_onnx(model: nn.Module, side: int) -> tuple[onnx.ModelProto, np.ndarray]:
    torch.manual_seed(1)
    x = torch.randn(1, 3, side, side)
    f = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), f, opset_version=18, dynamo=False, input_names=["x"])
    return onnx.load_from_string(f.getvalue()), x.numpy()


def run_whole(model: onnx.ModelProto, feeds: dict) -> dict:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip((o.name for o in sess.get_outputs()), sess.run(None, feeds)))


def assert_valid_dag(p: Partition, pieces: dict[str, onnx.ModelProto]) -> None:
    """Every piece's interface is the subgraph's, and each input exists before its subgraph runs."""
    available = set(p.graph_inputs)
    for s in p.subgraphs:
        piece = pieces[s.name]
        assert [i.name for i in piece.graph.input] == list(s.inputs)
        assert [o.name for o in piece.graph.output] == list(s.outputs)
        assert set(s.inputs) <= available, f"{s.name} reads a tensor nothing earlier writes"
        available |= set(s.outputs)
    assert set(p.graph_outputs) <= available
    names = [n for s in p.subgraphs for n in s.nodes]
    assert len(names) == len(set(names)), "an operator is in two subgraphs"


def assert_composes(model: onnx.ModelProto, p: Partition, x: np.ndarray) -> None:
    pieces = cut_model(model, p)
    assert list(pieces) == [s.name for s in p.subgraphs]
    assert_valid_dag(p, pieces)
    feeds = {p.graph_inputs[0]: x}
    whole = run_whole(model, feeds)
    got = compose(pieces, feeds, p.graph_outputs)
    for name in p.graph_outputs:
        scale = float(np.abs(whole[name]).max())
        np.testing.assert_allclose(got[name], whole[name], rtol=1e-5, atol=1e-6 * scale)


# -- a: ParNet's three streams, found without being told --------------------------------


@pytest.fixture(scope="module")
def parnet():
    torch.manual_seed(0)
    model = reparameterize(randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY)))
    return to_onnx(model, 64)


def test_parnet_streams_rediscovered(parnet):
    model, x = parnet
    p = find_partition(model, COST, devices=3)
    assert p.streams == 3 and p.is_split
    holders = [{s.name for s in p.subgraphs for n in s.nodes if n.startswith(f"/streams.{k}/")} for k in range(3)]
    assert all(len(h) == 1 for h in holders), holders  # each stream's blocks whole in one subgraph
    a, b, c = (h.pop() for h in holders)
    assert len({a, b, c}) == 3
    assert p.concurrent(a, b) and p.concurrent(b, c) and p.concurrent(a, c)  # runnable at once
    assert sorted(p[n].stream for n in (a, b, c)) == [0, 1, 2]
    assert p.predicted_speedup > 1 and p.critical_path_ms < p.whole_ms
    assert p.verdict.startswith("split into 3 streams")
    assert abs(sum(s.share for s in p.subgraphs) - 1) < 1e-9
    # exactly the hand-written shared split: stem, three streams, fusion (stem and fusion run alone)
    assert [s.stream for s in p.subgraphs].count(None) == 2 and len(p.subgraphs) == 5
    stem = {s.name for s in p.subgraphs for n in s.nodes if n.startswith("/inits.0/")}
    head = {s.name for s in p.subgraphs for n in s.nodes if n.startswith("/head/")}
    assert all(p[n].stream is None for n in stem | head)
    table = why_table(p)
    assert all(name in table for name in (a, b, c)) and p.verdict in table
    assert_composes(model, p, x)


def test_parnet_on_one_device_is_not_split(parnet):
    model, _ = parnet
    p = find_partition(model, COST, devices=1)
    assert [s.name for s in p.subgraphs] == ["whole"] and p.streams == 1
    assert p.predicted_speedup == 1.0
    # the best split was evaluated under the shared-threads model and predicted slower than whole
    assert "not split: the best split" in p.verdict and "share the threads" in p.verdict
    predicted = float(p.verdict.split("predicts ")[1].split(" ms")[0])
    assert predicted >= p.whole_ms


def test_two_devices_never_predict_worse_than_whole(parnet):
    model, _ = parnet
    p = find_partition(model, COST, devices=2)
    assert p.streams <= 2 and p.critical_path_ms <= p.whole_ms


# -- b: a plain chain stays whole ---------------------------------------------------------


def conv_chain(n: int = 4, channels: int = 8, side: int = 16) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        w = numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes += [helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        prev = f"r{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             [1, channels, side, side])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, channels, side, side])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_chain_is_not_split():
    model = conv_chain()
    p = find_partition(model, COST, devices=3)
    assert [s.name for s in p.subgraphs] == ["whole"] and p.predicted_speedup == 1.0
    assert p["whole"].nodes == tuple(f"{op}{i}" for i in range(4) for op in ("conv", "relu"))
    assert "chain of 8 operators" in p.verdict
    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    assert_composes(model, p, x)


def test_residual_side_branches_are_not_worth_a_stream():
    # conv → relu → conv → add(x): the identity branch can save nothing, so the blocks stay one chain
    model = conv_chain(n=4)
    nodes = list(model.graph.node)
    add = helper.make_node("Add", ["r1", "r3"], ["y"], name="residual")
    del model.graph.node[:]
    model.graph.node.extend([*nodes, add])
    model.graph.output[0].name = "y"
    p = find_partition(model, COST, devices=3)
    assert not p.is_split and "chain of 9 operators" in p.verdict


def test_flops_are_exact_for_a_conv():
    from parnet_deploy.partition import build_graph, prepare_model

    g = build_graph(prepare_model(conv_chain(n=1)))
    conv, relu = g.nodes
    assert conv.flops == 2 * 8 * 16 * 16 * 8 * 9 and relu.flops == 8 * 16 * 16
    assert relu.bytes == 2 * 8 * 16 * 16 * 4 and conv.bytes == 2 * 8 * 16 * 16 * 4 + 8 * 8 * 9 * 4


def test_symbolic_dimensions_are_refused():
    model = conv_chain(n=1)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    with pytest.raises(UserError, match="no static shape"):
        find_partition(model, COST, devices=2)
    with pytest.raises(UserError, match="devices must be >= 1"):
        find_partition(conv_chain(n=1), COST, devices=0)


# -- c: architectures nobody here wrote (pytorchcv, random weights) -----------------------


def _pooled(model: nn.Module) -> nn.Module:
    # the fixed final AvgPool expects 224/299 inputs; an adaptive one keeps small inputs valid
    model.features.final_pool = nn.AdaptiveAvgPool2d(1)
    return model


def _inceptionv3() -> nn.Module:
    from pytorchcv.models.inceptionv3 import inceptionv3

    return _pooled(inceptionv3(pretrained=False, in_size=(96, 96)))


def _fractalnet() -> nn.Module:
    # fractalnet_cifar10's own columns and depth, narrower (its 33.7M params would only slow the test down)
    from pytorchcv.models.fractalnet_cifar import CIFARFractalNet

    return CIFARFractalNet(channels=[16, 32, 64, 128, 128], num_columns=3, dropout_probs=[0.0] * 5,
                           loc_drop_prob=0.15, glob_drop_ratio=0.5, num_classes=10)


def _dla34() -> nn.Module:
    from pytorchcv.models.dla import dla34

    return _pooled(dla34(pretrained=False))


ZOO = {"inceptionv3": (_inceptionv3, 96), "fractalnet": (_fractalnet, 32), "dla34": (_dla34, 64)}


@pytest.fixture(scope="module", params=sorted(ZOO))
def foreign(request):
    pytest.importorskip("pytorchcv")
    build, side = ZOO[request.param]
    torch.manual_seed(0)
    model = randomize_bn(build())  # random BN statistics: a fresh BN would hide a wrongly wired cut
    return request.param, *to_onnx(model, side)


def test_foreign_architectures_cut_and_compose(foreign):
    name, model, x = foreign
    # a cheap launch makes every model worth splitting, so the cut is exercised on all three
    cheap = CostModel(launch_ms=0.002, gflops_per_s=50.0, gbytes_per_s=10.0)
    p = find_partition(model, cheap, devices=3)
    assert p.is_split and 2 <= p.streams <= 3, p.verdict
    assert p.critical_path_ms < p.whole_ms
    concurrent = [(a.name, b.name) for a in p.subgraphs for b in p.subgraphs
                  if a.name < b.name and p.concurrent(a.name, b.name)]
    assert concurrent, f"{name}: no two subgraphs can run at once"
    assert_composes(model, p, x)


# -- d: the search stays bounded on a wide graph ------------------------------------------


def wide_graph(branches: int = 40, depth: int = 3) -> OpGraph:
    """A fork into ``branches`` chains of ``depth`` equal operators, joined by one Concat."""
    nbytes = 4 * 64 * 32 * 32

    def node(name, op, inputs, output):
        return OpNode(name=name, op_type=op, inputs=tuple(inputs), outputs=(output,), flops=10_000_000,
                      bytes=2 * nbytes)

    nodes = [node("stem", "Conv", ["x"], "s")]
    for b in range(branches):
        prev = "s"
        for d in range(depth):
            nodes.append(node(f"b{b}_{d}", "Conv", [prev], f"t{b}_{d}"))
            prev = f"t{b}_{d}"
    nodes.append(node("join", "Concat", [f"t{b}_{depth - 1}" for b in range(branches)], "y"))
    sizes = {t: nbytes for n in nodes for t in (*n.inputs, *n.outputs)}
    return OpGraph(nodes=tuple(nodes), graph_inputs=("x",), graph_outputs=("y",), tensor_bytes=sizes)


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_search_is_bounded_on_a_wide_graph(devices):
    g = wide_graph()
    p = partition_graph(g, COST, devices=devices)
    assert p.streams <= devices
    assert sorted(n for s in p.subgraphs for n in s.nodes) == sorted(n.name for n in g.nodes)
    # execution order is a topological order: every input is written by an earlier subgraph
    available = {"x"}
    for s in p.subgraphs:
        assert set(s.inputs) <= available
        available |= set(s.outputs)
    for a, b, _ in p.edges:
        assert not p.depends(a, b), f"cycle between {a} and {b}"
    if devices == 1:
        assert not p.is_split
    else:
        assert p.is_split and p.streams == devices
        # 40 equal branches over ``devices`` streams: an equal share each, one subgraph per stream,
        # the fork and the join shared
        per_stream = [sum(1 for s in p.subgraphs if s.stream == k for n in s.nodes if n.startswith("b"))
                      for k in range(devices)]
        assert per_stream == [40 * 3 // devices] * devices
        assert len(p.subgraphs) == devices + 2 and [s.stream for s in p.subgraphs].count(None) == 2


@pytest.mark.parametrize("limit", [1, 3, 5])
def test_subgraph_limit_merges_the_cheapest_pairs_first(limit):
    """Above the limit (16 in a manifest), the merge that predicts least goes first, until it fits."""
    g = wide_graph()
    free = partition_graph(g, COST, devices=4)
    p = partition_graph(g, COST, devices=4, max_subgraphs=limit)
    assert len(free.subgraphs) == 6 and len(p.subgraphs) <= limit
    assert sorted(n for s in p.subgraphs for n in s.nodes) == sorted(n.name for n in g.nodes)
    available = {"x"}
    for s in p.subgraphs:
        assert set(s.inputs) <= available
        available |= set(s.outputs)
    assert p.critical_path_ms >= free.critical_path_ms - 1e-12
    if limit == 5:  # one merge away from the free split: still a split that pays
        assert p.is_split and p.critical_path_ms < p.whole_ms
    with pytest.raises(UserError, match="max_subgraphs must be >= 1"):
        partition_graph(g, COST, devices=4, max_subgraphs=0)


def test_cost_model_rejects_nonsense_and_calibrates():
    with pytest.raises(UserError):
        CostModel(launch_ms=-1, gflops_per_s=1, gbytes_per_s=1)
    from parnet_deploy.partition import measure_cost_model

    cm = measure_cost_model(threads=1, budget_s=0.4)
    assert cm.launch_ms > 0 and cm.gflops_per_s > 0 and cm.gbytes_per_s > 0 and cm.threads == 1
    assert cm.op_ms >= 0 and min(cm.copy_gbytes_per_s, cm.reduce_gbytes_per_s, cm.weights_gbytes_per_s) > 0


def test_cost_model_per_operator_cost_and_op_classes():
    def op(op_type, flops, nbytes):
        return OpNode(name=op_type, op_type=op_type, inputs=("a",), outputs=("b",), flops=flops, bytes=nbytes)

    conv, add = op("Conv", 10**9, 10**6), op("Add", 10**3, 10**7)
    concat, mean = op("Concat", 10**3, 10**7), op("ReduceMean", 10**3, 10**7)
    # three numbers: the pure roofline, every memory-bound class at the one memory rate
    assert COST.node_ms(conv) == pytest.approx(20.0) and COST.node_ms(add) == pytest.approx(1.0)
    assert COST.node_ms(concat) == COST.node_ms(mean) == COST.node_ms(add)
    classes = CostModel(launch_ms=0.02, gflops_per_s=50.0, gbytes_per_s=10.0, op_ms=0.005,
                        copy_gbytes_per_s=5.0, reduce_gbytes_per_s=2.0, weights_gbytes_per_s=0.01)
    assert classes.node_ms(conv) == pytest.approx(100.005)  # 1 MB of (mostly) weights at 0.01 GB/s beats 20 ms
    assert CostModel(launch_ms=0.02, gflops_per_s=50.0, gbytes_per_s=10.0,
                     weights_gbytes_per_s=1.0).node_ms(conv) == pytest.approx(20.0)  # compute-bound stays so
    assert classes.node_ms(add) == pytest.approx(1.005)
    assert classes.node_ms(concat) == pytest.approx(2.005) and classes.node_ms(mean) == pytest.approx(5.005)
    assert classes.transfer_ms(10**7) == pytest.approx(1.0)  # a cut copies at the memory rate
    with pytest.raises(UserError):
        CostModel(launch_ms=0, gflops_per_s=1, gbytes_per_s=1, op_ms=-1)
    with pytest.raises(UserError):
        CostModel(launch_ms=0, gflops_per_s=1, gbytes_per_s=1, reduce_gbytes_per_s=0)


def test_calibration_builds_sessions_as_the_onnxruntime_backend_does():
    """partition/ may not import the backends: its copy of the session options must not drift from theirs."""
    from parnet_deploy.backends.onnxruntime.runner import session_options as backend_options
    from parnet_deploy.partition.cost import session_options

    ours, theirs = session_options(3), backend_options(3)
    for attr in ("execution_mode", "graph_optimization_level", "intra_op_num_threads", "inter_op_num_threads",
                 "log_severity_level"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    key = "session.intra_op.allow_spinning"
    assert ours.get_session_config_entry(key) == theirs.get_session_config_entry(key) == "0"
