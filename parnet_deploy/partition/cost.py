"""How long an operator, a subgraph launch and a cut tensor take: a four-number cost model.

An operator's time is the roofline bound ``max(flops / compute rate, bytes / memory rate)``:
a kernel is limited by whichever resource it saturates, and the other one overlaps; the sum
would charge every conv twice. A subgraph adds one fixed ``launch_ms`` (session call,
thread-pool wake-up, input binding), and a tensor crossing a cut is copied once at the
memory rate. The partitioner takes the model as a parameter, so tests pass fixed numbers and
:func:`measure_cost_model` calibrates it on this machine with ONNX Runtime.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .graph import OpNode


@dataclass(frozen=True)
class CostModel:
    """Per-device rates; every device in a partition is assumed alike.

    ``threads`` is what the rates were measured with: all of them serve one subgraph at a
    time, which is why branches on one device never overlap (see ``search``).
    """

    launch_ms: float  # fixed cost of running one subgraph
    gflops_per_s: float  # sustained compute rate of a conv-heavy kernel
    gbytes_per_s: float  # memory rate: operators' traffic and tensors crossing a cut
    threads: int = 1

    def __post_init__(self) -> None:
        if self.launch_ms < 0 or self.gflops_per_s <= 0 or self.gbytes_per_s <= 0 or self.threads < 1:
            raise UserError(f"cost model needs launch_ms >= 0 and positive rates and threads, got {self}")

    def node_ms(self, node: OpNode) -> float:
        """The roofline time of one operator (ms)."""
        return max(node.flops / (self.gflops_per_s * 1e6), node.bytes / (self.gbytes_per_s * 1e6))

    def transfer_ms(self, nbytes: int) -> float:
        """Time to hand ``nbytes`` across a cut (ms)."""
        return nbytes / (self.gbytes_per_s * 1e6)


def measure_cost_model(threads: int = 1, budget_s: float = 3.0) -> CostModel:
    """Calibrate a :class:`CostModel` with ONNX Runtime on this machine, in about ``budget_s`` seconds.

    Launch: the median call of a one-element ``Identity`` session. Compute: a 3×3 conv,
    64→64 channels on 56×56, minus the launch. Memory: a ``Add`` of two 4 Mi-element tensors
    (three tensors of traffic), minus the launch. Medians, after a warm-up, so one hiccup
    does not skew the rates.
    """
    if threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3

    def session(nodes, inputs, inits=()):
        graph = helper.make_graph(nodes, "calib", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                                   for n, s in inputs],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def median_ms(sess, feeds, seconds):
        sess.run(None, feeds)
        times, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 5:
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3

    rng = np.random.default_rng(0)
    tiny = session([helper.make_node("Identity", ["x"], ["y"])], [("x", [1])])
    launch = median_ms(tiny, {"x": np.zeros(1, np.float32)}, budget_s / 4)

    w = numpy_helper.from_array(rng.standard_normal((64, 64, 3, 3)).astype(np.float32), "w")
    conv = session([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [("x", [1, 64, 56, 56])], [w])
    conv_ms = median_ms(conv, {"x": rng.standard_normal((1, 64, 56, 56)).astype(np.float32)}, budget_s * 3 / 8)
    conv_flops = 2 * 64 * 56 * 56 * 64 * 9

    n = 4 * 1024 * 1024
    add = session([helper.make_node("Add", ["a", "b"], ["y"])], [("a", [n]), ("b", [n])])
    feeds = {"a": np.ones(n, np.float32), "b": np.ones(n, np.float32)}
    add_ms = median_ms(add, feeds, budget_s * 3 / 8)

    floor = 1e-4  # a rate from a kernel faster than the launch would be infinite
    return CostModel(launch_ms=launch, gflops_per_s=conv_flops / (max(conv_ms - launch, floor) * 1e6),
                     gbytes_per_s=3 * 4 * n / (max(add_ms - launch, floor) * 1e6), threads=threads)
