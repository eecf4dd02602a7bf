"""The CUDA-stream executor's DAG logic, on the CPU: a fake CUDA API records every operation and
fake runners compute on numpy "device buffers"."""

from types import SimpleNamespace

import numpy as np
import pytest

from parnet_deploy.artifacts.dag import Dag
from parnet_deploy.artifacts.export_manifest import SubgraphSpec, TensorSpec
from parnet_deploy.backends.cuda_streams import ORIGIN, CudaStreamsExecutor
from parnet_deploy.errors import RuntimeFailure, UserError


def _t(name):
    return TensorSpec(name, (1, 2), "float32")


def _manifest(split="shared"):
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
    def __init__(self, device):
        self.device, self.value = device, np.zeros((1, 2), np.float32)


class FakeRunner:
    """Each output = sum of its inputs + its own number (so the result tells the data flow)."""

    def __init__(self, spec, device, log, shared):
        self.spec, self.device, self.log = spec, device, log
        self.buffers = {t.name: shared.setdefault((device, t.name), Buffer(device))
                        for t in (*spec.inputs, *spec.outputs)}
        self.closed = False

    def enqueue(self, stream):
        self.log.append(("enqueue", self.spec.name, stream))
        total = sum(self.buffers[t.name].value for t in self.spec.inputs)
        for t in self.spec.outputs:
            self.buffers[t.name].value = total + len(self.spec.name)

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
        self.log.append(("copy", src.device, dst.device, stream))

    def upload(self, dst, host, stream):
        dst.value = np.asarray(host, np.float32).copy()
        self.log.append(("upload", dst.device, stream))

    def download(self, src, stream):
        return src.value.copy()

    def synchronize(self, event):
        pass

    def elapsed_ms(self, start, end):
        return float(end.time - start.time)

    def same_buffer(self, a, b):
        return a is b

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


def _executor(split="shared", devices=None, cuda_graph=False, cuda=None, whole=False):
    cuda = cuda or FakeCuda()
    shared_buffers: dict = {}
    devices = devices or {}

    def load(spec, concurrency):
        return FakeRunner(spec, devices.get(spec.name, 0), cuda.log, shared_buffers)

    return CudaStreamsExecutor(_manifest(split), load, cuda_graph=cuda_graph, cuda=cuda, whole=whole), cuda


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
