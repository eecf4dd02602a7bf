import shutil

import numpy as np
import pytest
import torch
from conftest import TINY, randomize_bn, rel_err, threaded_mismatches

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.backends import get_backend
from parnet_deploy.backends.base import concurrent_subgraphs
from parnet_deploy.errors import ExportError, RunnerClosedError, UserError
from parnet_deploy.export import ExportConfig, export_model
from parnet_deploy.runtime.executors import StreamsExecutor

RES = (64, 64)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY), seed=7)


@pytest.fixture(scope="module")
def export_dirs(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    return {split: export_model(model, ExportConfig(output=root, name=split, resolution=RES, split=split,
                                                    verify=False), log=lambda _: None)[0]
            for split in ("replicated", "shared")}


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((1, 3, *RES)).astype(np.float32)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("mode, split", [("whole", "replicated"), ("streams", "replicated"), ("streams", "shared")])
def test_runner_equals_pytorch_train_form(model, export_dirs, backend, mode, split):
    with torch.no_grad():
        ref = model(torch.from_numpy(_x())).numpy()
    with runtime.load(export_dirs[split], backend=backend, mode=mode) as run:
        out = run(_x())
    assert out.shape == (1, 10) and out.dtype == np.float32
    assert rel_err(out, ref) <= 1e-4


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("split", ["replicated", "shared"])
@pytest.mark.parametrize("workers", [1, 3])
def test_streams_equal_whole_and_follow_the_dag(export_dirs, backend, split, workers):
    from parnet_deploy.export import load_manifest

    d = export_dirs[split]
    manifest = load_manifest(d)
    whole = runtime.load(d, mode="whole", backend=backend)
    be = get_backend(backend, threads=2)
    streams = StreamsExecutor(manifest, lambda spec, n: be.load(d / spec.file, spec, n), 2, workers=workers)
    for seed in range(3):
        x = _x(seed)
        assert rel_err(streams.infer({"image": x})["logits"], whole(x)) <= 1e-5
    _, times = streams.infer_timed({"image": _x()})
    stage = {t.name: t for t in times}
    assert set(stage) == {s.name for s in manifest.subgraphs}
    for s in manifest.subgraphs:  # nothing starts before every producer of its inputs has finished
        for p in manifest.dag.predecessors(s.name):
            assert stage[s.name].start >= stage[p].end, (s.name, p)
    if workers == 1:  # one at a time, in the manifest's order
        order = [t.name for t in sorted(times, key=lambda t: t.start)]
        assert order == [s.name for s in manifest.subgraphs]
    streams.close()
    whole.close()


@pytest.mark.parametrize("split", ["replicated", "shared"])
def test_openvino_streams_on_two_threads_chain_requests(export_dirs, split):
    """Boundary tensors handed over inside OpenVINO, the streams in waves (two side by side on one thread
    each, then the third on two): bitwise the generic executor's outputs, no wave before the last has
    ended, safe from many threads; wider budgets keep the generic executor."""
    from parnet_deploy.backends.openvino.chain import ChainedStreamsExecutor
    from parnet_deploy.export import load_manifest

    d = export_dirs[split]
    manifest = load_manifest(d)
    chained = runtime.load(d, backend="openvino", mode="streams", threads=2)
    assert isinstance(chained.executor, ChainedStreamsExecutor)
    stem = (("stem",),) if split == "shared" else ()
    assert chained.executor.waves == (*stem, ("stream0", "stream1"), ("stream2",), ("fusion",))
    assert chained.executor.workers == 2
    threads = {name: r.properties["INFERENCE_NUM_THREADS"] for name, r in chained.executor.runners.items()}
    assert threads == {**{s: "2" for s, in stem}, "stream0": "1", "stream1": "1", "stream2": "2", "fusion": "2"}
    with runtime.load(d, backend="openvino", mode="streams", threads=6) as wide:
        assert isinstance(wide.executor, StreamsExecutor) and wide.executor.workers == 3
    be = get_backend("openvino", threads=2)
    generic = StreamsExecutor(manifest, lambda spec, n: be.load(d / spec.file, spec, n), 2)
    for seed in range(3):
        assert np.array_equal(chained(_x(seed)), generic.infer({"image": _x(seed)})["logits"])
    _, times = chained.executor.infer_timed({"image": _x()})
    stage = {t.name: t for t in times}
    assert sorted(stage) == sorted(s.name for s in manifest.subgraphs) and len(times) == len(stage)
    for wave, after in zip(chained.executor.waves, chained.executor.waves[1:]):
        assert len({stage[n].start for n in wave}) == 1  # a wave starts together
        assert max(stage[n].end for n in wave) <= min(stage[n].start for n in after)
    expected = {s: chained(_x(s)) for s in range(4)}
    assert threaded_mismatches(lambda seed: chained(_x(seed)), expected, calls=5) == []
    with pytest.raises(UserError, match=r"input 'image' must be a C-contiguous float32 array of shape \[1, 3, 64"):
        chained.executor.infer({"image": _x().astype(np.float64)})
    chained.close()
    generic.close()


def test_openvino_waves_cut_each_level_into_runs_of_the_threads(export_dirs):
    from parnet_deploy.backends.openvino.chain import waves
    from parnet_deploy.export import load_manifest

    dag = load_manifest(export_dirs["shared"]).dag
    assert waves(dag, 1) == (("stem",), ("stream0",), ("stream1",), ("stream2",), ("fusion",))
    assert waves(dag, 2) == (("stem",), ("stream0", "stream1"), ("stream2",), ("fusion",))
    assert waves(dag, 3) == waves(dag, 8) == (("stem",), ("stream0", "stream1", "stream2"), ("fusion",))


class _FakeRequest:
    """An infer request whose calls are recorded and may fail."""

    def __init__(self, log, name, fail=None):
        self.log, self.name, self.fail, self.latency = log, name, fail, 1.0

    def _step(self, method):
        self.log.append(f"{self.name}.{method}")
        if self.fail == method:
            raise RuntimeError(f"Exception from src/x.cpp:1:\n{self.name} broke")

    def start_async(self):
        self._step("start_async")

    def infer(self):
        self._step("infer")

    def wait(self):
        self._step("wait")


@pytest.mark.parametrize("fail, message", [("infer", "b: OpenVINO inference failed: b broke"),
                                           ("wait", "a: OpenVINO inference failed: a broke")])
def test_openvino_wave_failure_names_the_subgraph_and_waits_for_the_others(fail, message):
    """Whichever request of a wave fails, the call raises naming its subgraph, and only after every request
    it started has finished (their tensors are the chain's); nothing after the wave runs."""
    from types import SimpleNamespace

    from parnet_deploy.backends.openvino.chain import _Chain
    from parnet_deploy.errors import RuntimeFailure

    log = []
    a = _FakeRequest(log, "a", fail if fail == "wait" else None)
    b = _FakeRequest(log, "b", fail if fail == "infer" else None)
    c = _FakeRequest(log, "c")
    chain = object.__new__(_Chain)
    chain.feeds, chain.tensors = [], {}
    chain.waves = [[(SimpleNamespace(name="a"), a), (SimpleNamespace(name="b"), b)], [(SimpleNamespace(name="c"), c)]]
    with pytest.raises(RuntimeFailure, match=f"^{message}$"):
        chain.run({}, [], 0.0)
    assert log == ["a.start_async", "b.infer", "a.wait"]


def test_concurrent_subgraphs_keep_two_threads_each():
    assert concurrent_subgraphs(width=3, parallelism=2) == 1
    assert concurrent_subgraphs(width=3, parallelism=6) == 3
    assert concurrent_subgraphs(width=3, parallelism=16) == 3


def test_one_runner_from_many_threads(export_dirs):
    run = runtime.load(export_dirs["shared"], mode="streams", threads=2)
    expected = {s: run(_x(s)) for s in range(4)}
    errors = threaded_mismatches(lambda seed: run(_x(seed)), expected, calls=5)
    run.close()
    assert errors == []


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 3, 64, 64), np.float64), "dtype must be float32"),
    (np.zeros((1, 3, 32, 32), np.float32), r"shape must be \(1, 3, 64, 64\)"),
    (np.zeros((3, 64, 64), np.float32), "shape must be"),
    (np.zeros((1, 3, 64, 128), np.float32)[..., ::2], "C-contiguous"),
    ([[0.0]], "must be a numpy array"),
])
def test_input_validation(export_dirs, bad, message):
    with runtime.load(export_dirs["replicated"]) as run:
        with pytest.raises(UserError, match=message):
            run(bad)


def test_closed_runner_and_bad_feeds(export_dirs):
    for mode in ("whole", "streams"):
        run = runtime.load(export_dirs["shared"], mode=mode)
        with pytest.raises(UserError, match=r"expected the inputs \['image'\], got \['extra', 'image'\]"):
            run.infer({"image": _x(), "extra": _x()})
        run.close()
        with pytest.raises(RunnerClosedError, match="runner is closed"):
            run(_x())
    with pytest.raises(UserError, match="threads must be an integer from 1 to 1024"):
        runtime.load(export_dirs["shared"], threads=0)


def test_tampered_export_refused(export_dirs, tmp_path):
    d = tmp_path / "t"
    shutil.copytree(export_dirs["shared"], d)
    data = bytearray((d / "stem.onnx").read_bytes())
    data[-10] ^= 0xFF
    (d / "stem.onnx").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="stem.onnx does not match its sha256"):
        runtime.load(d, mode="streams")


def test_bad_options(export_dirs, tmp_path):
    with pytest.raises(UserError, match="unknown mode 'fast'"):
        runtime.load(export_dirs["shared"], mode="fast")
    with pytest.raises(UserError, match="unknown backend 'tvm'"):
        runtime.load(export_dirs["shared"], backend="tvm")
    with pytest.raises(ExportError, match="export directory not found"):
        runtime.load(tmp_path / "nothing")


def test_runtime_does_not_import_torch(export_dirs):
    import subprocess
    import sys

    code = ("import sys, numpy as np; from parnet_deploy import runtime; "
            f"r = runtime.load({str(export_dirs['shared'])!r}, mode='streams'); "
            "r(np.zeros((1, 3, 64, 64), np.float32)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
