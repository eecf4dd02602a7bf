"""How long an operator, a subgraph launch and a cut tensor take: a small roofline cost model.

An operator's time is a fixed per-operator cost plus the roofline bound
``max(flops / compute rate, bytes / memory rate)``: a kernel is limited by whichever resource it
saturates, and the other one overlaps (the sum would charge every conv twice). The memory rate
depends on the operator's class (``node_ms``): weights stream from DRAM, copies and reductions
run below an elementwise kernel's rate; each class rate is optional and falls back to
``gbytes_per_s``, so a model built from the first three numbers is the plain roofline. The fixed part
(``op_ms``: ONNX Runtime's kernel dispatch, and waking the intra-op thread pool, which sleeps
between kernels because the project turns spinning off) is what a model of hundreds of small
operators pays beyond its FLOPs and bytes. A subgraph adds one fixed ``launch_ms`` (session
call, input binding), and a tensor crossing a cut is copied once at the memory rate. The
partitioner takes the model as a parameter, so tests pass fixed numbers and
:func:`measure_cost_model` calibrates it on this machine with ONNX Runtime.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .graph import OpNode

# operator classes whose memory traffic runs at their own calibrated rate
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
COPY_OPS = frozenset({"Concat", "Split", "Slice", "Transpose", "Pad", "Tile", "Expand", "Gather", "DepthToSpace",
                      "SpaceToDepth"})
REDUCE_OPS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSumExp", "ReduceSumSquare", "GlobalAveragePool", "GlobalMaxPool"})


@dataclass(frozen=True)
class CostModel:
    """Per-device rates; every device in a partition is assumed alike.

    ``threads`` is what the rates were measured with: all of them serve one subgraph at a
    time, which is why branches on one device never overlap (see ``search``). ``op_ms``
    defaults to 0 and the class rates to ``gbytes_per_s`` (the pure roofline), so a model built
    from three numbers means what it did.
    """

    launch_ms: float  # fixed cost of running one subgraph
    gflops_per_s: float  # sustained compute rate of a conv-heavy kernel
    gbytes_per_s: float  # memory rate: operators' traffic and tensors crossing a cut
    threads: int = 1
    op_ms: float = 0.0  # fixed cost of running one operator inside a subgraph
    copy_gbytes_per_s: float | None = None  # memory rate of data movement (Concat, Split, ...); None: gbytes_per_s
    reduce_gbytes_per_s: float | None = None  # memory rate of reductions (ReduceMean, ...); None: gbytes_per_s
    weights_gbytes_per_s: float | None = None  # memory rate of Conv/Gemm/MatMul (weights from DRAM); None: gbytes_per_s

    def __post_init__(self) -> None:
        rates = [self.gflops_per_s, self.gbytes_per_s,
                 *(r for r in (self.copy_gbytes_per_s, self.reduce_gbytes_per_s, self.weights_gbytes_per_s)
                   if r is not None)]
        if self.launch_ms < 0 or self.op_ms < 0 or min(rates) <= 0 or self.threads < 1:
            raise UserError(f"cost model needs launch_ms, op_ms >= 0 and positive rates and threads, got {self}")

    def node_ms(self, node: OpNode) -> float:
        """The time of one operator (ms): its fixed cost plus its roofline time, the memory side at
        its class's rate (weights stream from DRAM; data movement and reductions run below an
        elementwise kernel's rate)."""
        if node.op_type in WEIGHTED_OPS:
            rate = self.gbytes_per_s if self.weights_gbytes_per_s is None else self.weights_gbytes_per_s
        elif node.op_type in COPY_OPS:
            rate = self.gbytes_per_s if self.copy_gbytes_per_s is None else self.copy_gbytes_per_s
        elif node.op_type in REDUCE_OPS:
            rate = self.gbytes_per_s if self.reduce_gbytes_per_s is None else self.reduce_gbytes_per_s
        else:
            rate = self.gbytes_per_s
        return self.op_ms + max(node.flops / (self.gflops_per_s * 1e6), node.bytes / (rate * 1e6))

    def transfer_ms(self, nbytes: int) -> float:
        """Time to hand ``nbytes`` across a cut (ms)."""
        return nbytes / (self.gbytes_per_s * 1e6)


# calibration shapes. Convs: (in channels, out channels, side, kernel, stride): a CNN's convs at 224x224
# from the stem down, channel counts powers of two and not, 3x3 and 1x1. Concat: (inputs, channels each,
# side). ReduceMean: (shape, axes), one mean over the inner axes (global pooling) and one over the outer
# axis (stack-and-average joins), equal sizes.
CONVS = ((3, 32, 224, 3, 2), (16, 32, 112, 3, 1), (64, 64, 56, 3, 1), (96, 96, 56, 3, 1), (128, 128, 28, 3, 1),
         (192, 192, 28, 3, 1), (256, 256, 14, 3, 1), (384, 384, 14, 3, 1), (512, 512, 7, 3, 1), (128, 128, 28, 1, 1),
         (288, 64, 35, 1, 1))
CONCATS = ((2, 64, 56), (4, 96, 28))
REDUCES = (((1, 128, 28, 28), (2, 3)), ((2, 1, 64, 28, 28), (0,)))
GEMV = (4096, 4096)  # a MatMul of one row by a 64 MiB weight: more than a last-level cache holds
CHAIN = 16
CUT_CHAIN = (8, 64, 28)  # 1x1 convs, channels, side: a chain run as one session and as one session per conv
SMALL, LARGE = 4 * 1024, 256 * 1024


def measure_cost_model(threads: int = 1, budget_s: float = 3.0) -> CostModel:
    """Calibrate a :class:`CostModel` with ONNX Runtime on this machine, in about ``budget_s`` seconds
    (plus session creation), on synthetic operators only: no model's own times go in.

    Every session is built the way the project runs models (``session_options``: sequential
    execution, full graph optimization, ``threads`` intra-op threads, no spinning), since
    spinning alone changes both the launch and the per-operator cost. Medians after a warm-up,
    so one hiccup does not skew a number. Each kernel's time is taken less the launch (and,
    but for the chain, less the per-operator cost) before a rate is read off it.

    - **Launch**: what one more subgraph costs, measured on a chain of ``CUT_CHAIN`` 1×1 convs
      run as one session and as one session per conv, each fed the previous one's output:
      ``(split − whole) / (convs − 1)``, less the modelled copy of the cut tensor (charged
      apart, per cut). Beyond a session call it pays for allocating the output and ONNX
      Runtime's layout reorders at a graph's edges (its CPU convs run in a blocked layout):
      about 10× a bare call of a one-element ``Identity`` session, which is what the first
      calibration charged (and which still serves as the call overhead taken off the
      kernels below). With the bare call, three-device splits of ParNet-S ran one CPU's
      streams 1.4 ms slower than the whole graph, not 0.1 ms.
    - **Per-operator cost and memory rate**: a chain of ``CHAIN`` ``Add`` operators (each reads
      the previous sum and the input, writes one tensor: three tensors of traffic), run at two
      sizes. Per operator, ``t(n) = op_ms + 12 n / rate``; the two sizes give both unknowns. The
      large size (256 Ki elements, 1 MiB a tensor) is a typical CNN activation at batch 1, so
      the rate is the cache-resident one real operators see, not a DRAM streaming rate (a
      4 Mi-element ``Add``, the earlier calibration, ran about half as fast per byte as the
      activations of real models do).
    - **Compute rate**: total FLOPs over total time of one session running eleven convs one
      after another, spanning a CNN at 224×224: a stride-2 stem from 3 channels, a 16→32 conv on
      112², 3×3 convs from 64 channels on 56² to 512 on 7² with channel counts both powers of two
      and not (96, 192, 384), and two 1×1 convs. ONNX Runtime's conv rate varies with the shape
      (thin stems and channel counts that do not fill its blocks ran at half the rate of a
      64-channel 3×3 in a microbenchmark), so one shape, as in the first calibration (a 64→64
      3×3 on 56²), predicted real models' convs about 1.4× too fast; a broad sample averages
      over the shapes instead of sitting at the fast end. One session, each conv with its own
      weights, so each kernel starts as in a model: weights not just used, input just written.
    - **Data movement** (``COPY_OPS``): ``Concat`` along channels (two and four inputs);
      ONNX Runtime's copies run well below an elementwise kernel's rate (about 2.5× slower
      here), and real multi-branch models concatenate a lot.
    - **Reductions** (``REDUCE_OPS``): ``ReduceMean`` over the spatial axes (global pooling,
      squeeze-excite) and over the outermost axis (a stack-and-average join), equal sizes, one
      pooled rate. The outer-axis mean runs more than 10× below the memory rate in ONNX
      Runtime; an :class:`OpNode` carries no axes, so the class gets one rate for both, which
      overcharges a model's global pools a little to avoid undercharging its joins a lot.
    - **Weights** (``WEIGHTED_OPS``): a ``MatMul`` of one row by a 64 MiB weight matrix, pure
      weight streaming. At batch 1 a conv or a fully connected layer is memory-bound only when
      its bytes are mostly weights (a 512-channel 3×3 conv on a 2×2 map: 9.4 MB of weights for
      19 MFLOPs), and a model's weights, tens of MB in all, do not stay in cache from one call
      to the next, so they come from DRAM each time: charging them at the cache-resident
      activation rate undercharged such convs about 3×. Compute-bound convs are unaffected.
    """
    if threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    opts = session_options(threads)

    def session(nodes, inputs, inits=(), outputs=("y",)):
        graph = helper.make_graph(nodes, "calib", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                                   for n, s in inputs],
                                  [helper.make_tensor_value_info(y, TensorProto.FLOAT, None) for y in outputs],
                                  list(inits))
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
    launch = median_ms(tiny, {"x": np.zeros(1, np.float32)}, budget_s / 10)

    def chain_ms(n):  # per Add of a chain, launch removed
        nodes = [helper.make_node("Add", [f"a{i}" if i else "x", "x"], [f"a{i + 1}" if i + 1 < CHAIN else "y"])
                 for i in range(CHAIN)]
        sess = session(nodes, [("x", [n])])
        return (median_ms(sess, {"x": rng.standard_normal(n).astype(np.float32)}, budget_s / 10) - launch) / CHAIN

    small, large = chain_ms(SMALL), chain_ms(LARGE)
    floor = 1e-5  # a rate from a kernel faster than its overheads would be infinite
    gbytes = 12 * (LARGE - SMALL) / (max(large - small, floor) * 1e6)
    op = max(0.0, small - 12 * SMALL / (gbytes * 1e6))

    def kernel_ms(nodes, inputs, inits, seconds):  # one kernel, less the launch and the per-operator cost
        feeds = {n: rng.standard_normal(shape).astype(np.float32) for n, shape in inputs}
        return max(median_ms(session(nodes, inputs, inits), feeds, seconds) - launch - op, floor)

    nodes, inputs, inits, flops = [], [], [], 0
    for j, (cin, cout, side, k, stride) in enumerate(CONVS):  # one session, one conv after another
        w = (rng.standard_normal((cout, cin, k, k)) / (k * k * cin)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{j}"))
        inputs.append((f"x{j}", [1, cin, side, side]))
        nodes.append(helper.make_node("Conv", [f"x{j}", f"w{j}"], [f"y{j}"], pads=[k // 2] * 4, strides=[stride] * 2))
        flops += 2 * cout * cin * k * k * (-(-side // stride)) ** 2
    convs = session(nodes, inputs, inits, outputs=[f"y{j}" for j in range(len(CONVS))])
    feeds = {n: rng.standard_normal(shape).astype(np.float32) for n, shape in inputs}
    ms = max(median_ms(convs, feeds, budget_s / 2) - launch - len(nodes) * op, floor)
    copied, copy_ms = 0, 0.0
    for n, c, side in CONCATS:
        names = [f"x{i}" for i in range(n)]
        copy_ms += kernel_ms([helper.make_node("Concat", names, ["y"], axis=1)],
                             [(x, [1, c, side, side]) for x in names], (), budget_s / 10 / len(CONCATS))
        copied += 2 * 4 * n * c * side * side
    reduced, reduce_ms = 0, 0.0
    for shape, axes in REDUCES:
        a = numpy_helper.from_array(np.array(axes, np.int64), "axes")
        reduce_ms += kernel_ms([helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
                               [("x", list(shape))], [a], budget_s / 10 / len(REDUCES))
        size = int(np.prod(shape))
        reduced += 4 * (size + size // int(np.prod([shape[i] for i in axes])))
    k, n = GEMV
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    gemv_ms = kernel_ms([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", [1, k])], [w], budget_s / 10)
    count, channels, side = CUT_CHAIN
    cut_nodes, cut_inits = [], []
    for j in range(count):
        w = (rng.standard_normal((channels, channels, 1, 1)) / channels).astype(np.float32)
        cut_inits.append(numpy_helper.from_array(w, f"c{j}"))
        cut_nodes.append(helper.make_node("Conv", [f"t{j}", f"c{j}"], [f"t{j + 1}"]))
    shape = [1, channels, side, side]
    x = rng.standard_normal(shape).astype(np.float32)
    whole_chain = session([helper.make_node("Identity", ["x"], ["t0"]), *cut_nodes[:-1],
                           helper.make_node("Conv", [f"t{count - 1}", f"c{count - 1}"], ["y"])],
                          [("x", shape)], cut_inits)
    pieces = [session([helper.make_node("Conv", ["x", f"c{j}"], ["y"])], [("x", shape)], [cut_inits[j]])
              for j in range(count)]

    def run_pieces(t):
        for piece in pieces:
            t = piece.run(None, {"x": t})[0]
        return t

    def timed_ms(fn):
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    whole_run, split_run = (lambda: whole_chain.run(None, {"x": x})), (lambda: run_pieces(x))
    whole_run(), split_run()
    # the difference of two close times: paired in rounds, one call each, so that a burst of load hits
    # both sides, and the median of the per-round differences
    differences, end = [], time.perf_counter() + budget_s / 5
    while time.perf_counter() < end or len(differences) < 11:
        differences.append(timed_ms(split_run) - timed_ms(whole_run))
    cut_ms = statistics.median(differences) / (count - 1) - 4 * x.size / (gbytes * 1e6)
    return CostModel(launch_ms=max(launch, cut_ms), gflops_per_s=flops / (ms * 1e6), gbytes_per_s=gbytes,
                     threads=threads, op_ms=op, copy_gbytes_per_s=copied / (copy_ms * 1e6),
                     reduce_gbytes_per_s=reduced / (reduce_ms * 1e6),
                     weights_gbytes_per_s=4 * (k * n + k + n) / (gemv_ms * 1e6))


def session_options(threads: int):
    """ONNX Runtime's options as the project's ORT backend sets them (``backends/onnxruntime/runner.py``,
    which this layer may not import; ``tests/test_partition.py`` checks the two agree): one operator at
    a time, full graph optimization, no spinning threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so
