"""The CUDA-stream executor's DAG logic, on the CPU: a fake CUDA API records every operation and
fake runners compute on numpy "device buffers"."""

import functools
from types import SimpleNamespace

import numpy as np
import pytest

from parnet_deploy.artifacts.dag import Dag
from parnet_deploy.artifacts.export_manifest import SubgraphSpec, TensorSpec
from parnet_deploy.artifacts.schema import BatchDim
from parnet_deploy.backends.cuda_streams import ORIGIN, CudaStreamsExecutor
from parnet_deploy.errors import RuntimeFailure, UserError


def _t(name, batch=None):
    return TensorSpec(name, (batch or 1, 2), "float32")


def _manifest(split="shared", batch=None):
    """``batch``: a BatchDim for a dynamic-batch export (dim 0 of every tensor), else batch 1."""
    _t = functools.partial(globals()["_t"], batch=batch)
    if split == "shared":
        subs = [SubgraphSpec("stem", "stem.onnx", (_t("image"),), (_t("x0"), _t("x1"), _t("x2")))]
        subs += [SubgraphSpec(f"stream{k}", f"stream{k}.onnx", (_t(f"x{k}"),), (_t(f"y{k}"),), k) for k in range(3)]
    else:
        subs = [SubgraphSpec(f"stream{k}", f"stream{k}.onnx", (_t("image"),), (_t(f"y{k}"),), k) for k in range(3)]
    subs.append(SubgraphSpec("fusion", "fusion.onnx", (_t("y0"), _t("y1"), _t("y2")), (_t("logits"),)))
    whole = SubgraphSpec("model", "model.onnx", (_t("image"),), (_t("logits"),))
    dag = Dag(tuple(subs), ("image",), ("logits",))
    return SimpleNamespace(subgraphs=tuple(subs), dag=dag, input=whole.inputs[0], whole=whole)


class Buffer:
    def __init__(self, device, rows=1):
        self.device, self.value = device, np.zeros((rows, 2), np.float32)
        self.allocated = rows


class Rows:
    """A view of a buffer's first ``n`` rows (what ``CudaApi.rows`` returns)."""

    def __init__(self, buffer, n):
        self.buffer, self.n, self.device = buffer, n, buffer.device

    @property
    def value(self):
        return self.buffer.value[:self.n]

    @value.setter
    def value(self, v):
        assert v.shape[0] == self.n, (v.shape, self.n)
        self.buffer.value[:self.n] = v


class FakeRunner:
    """Each output = sum of its inputs + its own number (so the result tells the data flow); a
    dynamic-batch runner's buffers hold the largest batch and a call computes its first rows."""

    def __init__(self, spec, device, log, shared):
        self.spec, self.device, self.log = spec, device, log
        self.buffers = {t.name: shared.setdefault((device, t.name), Buffer(device, t.max_shape[0]))
                        for t in (*spec.inputs, *spec.outputs)}
        self.closed = False

    def enqueue(self, stream, batch=None):
        self.log.append(("enqueue", self.spec.name, stream) if batch is None else
                        ("enqueue", self.spec.name, stream, batch))
        n = len(self.buffers[self.spec.inputs[0].name].value) if batch is None else batch
        total = sum(self.buffers[t.name].value[:n] for t in self.spec.inputs)
        for t in self.spec.outputs:
            self.buffers[t.name].value[:n] = total + len(self.spec.name)

    def close(self):
        self.closed = True


class FakeCuda:
    def __init__(self, fail_capture=False):
        self.log, self.clock, self.fail_capture = [], 0, fail_capture
        self.capturing = False

    def stream(self, device):
        self.streams = getattr(self, "streams", 0) + 1
        return f"stream{self.streams}@{device}"

    def event(self, timing):
        return SimpleNamespace(timing=timing, time=None)

    def record(self, event, stream):
        assert not (self.capturing and event.timing), "timing events cannot be recorded inside a graph"
        self.clock += 1
        event.time = self.clock
        self.log.append(("record", id(event), stream))

    def wait(self, stream, event):
        self.log.append(("wait", stream, id(event)))

    def copy(self, dst, src, stream):
        dst.value = src.value.copy()
        self.log.append(("copy", src.device, dst.device, stream, len(src.value)))

    def upload(self, dst, host, stream):
        dst.value = np.asarray(host, np.float32).copy()
        self.log.append(("upload", dst.device, stream, len(host)))

    def download(self, src, stream):
        return src.value.copy()

    def synchronize(self, event):
        pass

    def elapsed_ms(self, start, end):
        return float(end.time - start.time)

    def same_buffer(self, a, b):
        return a is b

    def rows(self, buffer, n):
        self.log.append(("rows", n))
        return Rows(buffer, n)

    def new_graph(self):
        return SimpleNamespace(ops=None)

    def capture(self, graph, stream):
        cuda = self

        class Capture:
            def __enter__(self):
                if cuda.fail_capture:
                    raise RuntimeError("operation not permitted when stream is capturing")
                cuda.capturing, self.start = True, len(cuda.log)

            def __exit__(self, *exc):
                cuda.capturing = False
                graph.ops = cuda.log[self.start:]

        return Capture()

    def replay(self, graph, stream):
        self.log.append(("replay", stream))


def _executor(split="shared", devices=None, cuda_graph=False, cuda=None, whole=False, batch=None):
    cuda = cuda or FakeCuda()
    shared_buffers: dict = {}
    devices = devices or {}

    def load(spec, concurrency):
        return FakeRunner(spec, devices.get(spec.name, 0), cuda.log, shared_buffers)

    return CudaStreamsExecutor(_manifest(split, batch), load, cuda_graph=cuda_graph, cuda=cuda, whole=whole), cuda


def _expected(split):
    x = np.full((1, 2), 1.0, np.float32)
    if split == "shared":
        stem = x + 4
        ys = [stem + 7 for _ in range(3)]
    else:
        ys = [x + 7 for _ in range(3)]
    return sum(ys) + 6


@pytest.mark.parametrize("split", ["shared", "replicated"])
def test_dag_order_fork_join_and_result(split):
    ex, cuda = _executor(split)
    assert len(set(ex.streams.values())) == len(ex.specs) + 1  # one stream per subgraph, plus the origin
    out, stages = ex.infer_timed({"image": np.ones((1, 2), np.float32)})
    assert np.array_equal(out["logits"], _expected(split))
    log = cuda.log
    enq = {e[1]: i for i, e in enumerate(log) if e[0] == "enqueue"}
    fork, done = id(ex.fork), {n: id(e) for n, e in ex.done.items()}
    for spec in ex.specs:
        stream = ex.streams[spec.name]
        waits = [i for i, e in enumerate(log) if e[0] == "wait" and e[1] == stream and i < enq[spec.name]]
        waited = {log[i][2] for i in waits}
        assert fork in waited  # forked from the origin: capturable
        for p in _manifest(split).dag.predecessors(spec.name):
            assert done[p] in waited and enq[p] < enq[spec.name]
        start = next(i for i, e in enumerate(log) if e[0] == "record" and e[1] == id(ex.stage_start[spec.name]))
        assert all(i < start for i in waits) and start < enq[spec.name]  # starts when its inputs are ready
        end = next(i for i, e in enumerate(log) if e[0] == "record" and e[1] == id(ex.stage_end[spec.name]))
        assert enq[spec.name] < end < next(i for i, e in enumerate(log) if e[0] == "record" and e[1] == done[spec.name])
    joins = [e[2] for e in log if e[0] == "wait" and e[1] == ex.streams[ORIGIN]]
    assert set(done.values()) <= set(joins)  # joined back into the origin
    assert [s.name for s in stages] == [s.name for s in ex.specs]
    assert all(0 < s.start < s.end for s in stages)
    assert ex.gpu_time_ms[-1] > max(s.end for s in stages) * 1e3 - 1e-9  # first start to last done spans them all
    assert not [e for e in log if e[0] == "copy"]  # one device: buffers are shared, nothing copied


def test_runners_on_several_devices_are_refused_and_closed():
    closed = []
    cuda = FakeCuda()

    def load(spec, concurrency):
        runner = FakeRunner(spec, 1 if spec.name == "stream1" else 0, cuda.log, {})
        runner.close = lambda: closed.append(spec.name)
        return runner

    with pytest.raises(UserError, match="CUDA streams run on one GPU.*mode='distributed'"):
        CudaStreamsExecutor(_manifest("shared"), load, cuda=cuda)
    assert sorted(closed) == sorted(s.name for s in _manifest("shared").subgraphs)


def test_separate_buffers_are_copied_on_the_consumer_stream():
    cuda = FakeCuda()

    def load(spec, concurrency):  # every runner with buffers of its own (as torch and TensorRT runners)
        return FakeRunner(spec, 0, cuda.log, {})

    ex = CudaStreamsExecutor(_manifest("shared"), load, cuda=cuda)
    out, _ = ex.infer_timed({"image": np.ones((1, 2), np.float32)})
    assert np.array_equal(out["logits"], _expected("shared"))
    copies = [e for e in cuda.log if e[0] == "copy"]
    assert [e[3] for e in copies] == [ex.streams[n] for n in ("stream0", "stream1", "stream2")] + [
        ex.streams["fusion"]] * 3  # x_k on stream k's stream, y0..y2 on the fusion's


def test_cuda_graph_is_captured_once_and_replayed():
    ex, cuda = _executor("shared", cuda_graph=True)
    captured = ex.graph.ops
    assert [e[1] for e in captured if e[0] == "enqueue"] == [s.name for s in ex.specs]
    before = len([e for e in cuda.log if e[0] == "enqueue"])
    for i in range(3):
        out, stages = ex.infer_timed({"image": np.full((1, 2), float(i), np.float32)})
        assert [s.name for s in stages] == ["cuda-graph"] and stages[0].end > 0
    assert len([e for e in cuda.log if e[0] == "enqueue"]) == before  # no enqueues outside the graph
    assert len([e for e in cuda.log if e[0] == "replay"]) == 3 and len(ex.gpu_time_ms) == 3


def test_a_failed_capture_is_an_error_not_a_silent_fallback():
    with pytest.raises(RuntimeFailure, match="CUDA graph capture of the streams run failed"):
        _executor("shared", cuda_graph=True, cuda=FakeCuda(fail_capture=True))


def test_close_closes_every_runner():
    ex, _ = _executor("replicated")
    ex.close()
    assert all(r.closed for r in ex.runners.values())


def test_whole_graph_runs_as_a_one_node_dag_with_gpu_time_and_a_graph():
    ex, cuda = _executor(whole=True, cuda_graph=True)
    assert ex.mode == "whole" and [s.name for s in ex.specs] == ["model"]
    assert [e[1] for e in ex.graph.ops if e[0] == "enqueue"] == ["model"]
    _, stages = ex.infer_timed({"image": np.full((1, 2), 2.0, np.float32)})  # (the fake replay computes nothing)
    assert [s.name for s in stages] == ["cuda-graph"] and ex.gpu_time_ms[-1] > 0
    plain, _ = _executor(whole=True)
    out, stages = plain.infer_timed({"image": np.full((1, 2), 2.0, np.float32)})
    assert np.array_equal(out["logits"], np.full((1, 2), 2.0 + len("model"), np.float32))
    assert [s.name for s in stages] == ["model"] and 0 < stages[0].start < stages[0].end


@pytest.mark.parametrize("split", ["shared", "replicated"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared-buffers", "own-buffers"])
def test_dynamic_batch_runs_views_of_max_size_buffers(split, shared):
    """A 1..4 export: buffers hold 4 rows, allocated once; a call at batch n uploads, copies, enqueues
    and downloads its first n rows; each row equals the batch-1 result; batch 5 is refused before
    anything is queued."""
    cuda = FakeCuda()
    pool: dict = {}
    runners = []

    def load(spec, concurrency):
        runners.append(FakeRunner(spec, 0, cuda.log, pool if shared else {}))
        return runners[-1]

    ex = CudaStreamsExecutor(_manifest(split, BatchDim(1, 4)), load, cuda=cuda)
    assert all(b.allocated == 4 for r in runners for b in r.buffers.values())
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    out, _ = ex.infer_timed({"image": x})
    rows = [ex.infer({"image": x[i:i + 1]})["logits"] for i in range(3)]
    assert out["logits"].shape == (3, 2) and np.array_equal(out["logits"], np.concatenate(rows))
    assert np.array_equal(rows[1], _expected(split) + 3 * (x[1:2] - 1))  # _expected: an input of ones, 3 paths
    enqueued = [e for e in cuda.log if e[0] == "enqueue"]
    assert {e[3] for e in enqueued} == {3, 1} and len(enqueued) == 4 * len(ex.specs)
    uploads = [e[3] for e in cuda.log if e[0] == "upload"]  # one per subgraph that reads the image
    k = sum(any(t.name == "image" for t in s.inputs) for s in ex.specs)
    assert uploads == [3] * k + [1] * 3 * k
    copied = {e[4] for e in cuda.log if e[0] == "copy"}  # own buffers: copies, of the call's rows only
    assert copied == (set() if shared else {3, 1})
    assert ex.infer({"image": np.ones((4, 2), np.float32)})["logits"].shape == (4, 2)
    before = len(cuda.log)
    with pytest.raises(UserError, match=r"streams: batch 5 is outside the bounds 1\.\.4") as e:
        ex.infer({"image": np.ones((5, 2), np.float32)})
    assert "\n" not in str(e.value) and len(cuda.log) == before  # nothing queued, nothing uploaded


def test_static_exports_take_no_views_and_enqueue_as_before():
    ex, cuda = _executor("shared")
    ex.infer({"image": np.ones((1, 2), np.float32)})
    assert not [e for e in cuda.log if e[0] == "rows"]
    assert all(len(e) == 3 for e in cuda.log if e[0] == "enqueue")  # enqueue(stream): no batch argument


def test_cuda_graph_is_refused_for_a_dynamic_export_before_loading():
    loaded = []

    def load(spec, concurrency):
        loaded.append(spec.name)

    with pytest.raises(UserError, match=r"cuda_graph needs static shapes.*batch is 1\.\.4; export a static batch"):
        CudaStreamsExecutor(_manifest("shared", BatchDim(1, 4)), load, cuda_graph=True, cuda=FakeCuda())
    assert loaded == []
