"""Batch N (a dynamic-batch export, batch 1..4) on the GPU code paths, run on the CPU.

- TensorRT: the builder and the runner against a fake ``tensorrt`` module (and a fake torch.cuda):
  the fake parser reads the export's real ONNX inputs, the fake engine runs the ONNX with ONNX
  Runtime at the shape the runner set, reading and writing the runner's buffers by address. The
  real TensorRT never runs here (no GPU, TensorRT not installable): these tests check what our
  code hands TensorRT (profile min/opt/max, per-call input shapes, buffer sizes, addresses), not
  TensorRT itself. tests/test_gpu.py has the same checks for a real GPU.
- The CUDA-stream executor with real torch and (fake) TensorRT runners, its CUDA API replaced by
  CPU tensor operations: buffers sized for the maximum once, views of the call's batch.
- The torch backend on the CPU, whole and streams.

Every mode: the rows of a batch equal the batch-1 results; a batch outside 1..4 is refused with
one line naming the bounds.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import engine_model, rel_err

from parnet_deploy import runtime
from parnet_deploy.artifacts.engines_manifest import BuildOptions, DeviceRecord
from parnet_deploy.artifacts.export_manifest import load_manifest
from parnet_deploy.artifacts.schema import BatchDim
from parnet_deploy.backends import get_backend
from parnet_deploy.backends.cuda_streams import CudaStreamsExecutor
from parnet_deploy.backends.tensorrt import builder as trt_builder
from parnet_deploy.backends.tensorrt import runner as trt_runner
from parnet_deploy.errors import ExportError, UserError
from parnet_deploy.export import ExportConfig, export_model

RES = (32, 32)
BOUNDS = (1, 4)
OUT_OF_BOUNDS = "batch 5 is outside the bounds 1..4"


@pytest.fixture(scope="module")
def dyn(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch-gpu-paths")
    d = export_model(engine_model(), ExportConfig(output=root, name="dyn", resolution=RES, batch=BOUNDS,
                                                 split="shared", verify=False), log=lambda _: None)[0]
    return d, load_manifest(d)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, *RES)).astype(np.float32)


def _rows_match(call, x: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """``call`` at batch len(x); each row equals ``call`` at batch 1 on that row. Returns the batch result."""
    batched = np.array(call(x))
    assert batched.shape[0] == len(x)
    for i in range(len(x)):
        assert rel_err(batched[i:i + 1], np.array(call(x[i:i + 1]))) <= tol, i
    return batched


# -- a fake tensorrt module ---------------------------------------------------------------------------
class _Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO = range(4)

    def __init__(self):
        pass


class _Profile:
    def __init__(self):
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class _Network:
    def __init__(self):
        self.inputs, self.path = [], None

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]


class _Parser:
    num_errors = 0

    def __init__(self, network, log):
        self.network = network

    def parse_from_file(self, path):
        import onnx

        graph = onnx.load(path, load_external_data=False).graph
        init = {i.name for i in graph.initializer}
        self.network.path = path
        for v in graph.input:
            if v.name not in init:  # what TensorRT reports: -1 for a dim_param
                dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in v.type.tensor_type.shape.dim)
                self.network.inputs.append(SimpleNamespace(name=v.name, shape=dims))
        return True


class _Config:
    def __init__(self, fake):
        self.fake, self.profiles = fake, []

    def set_memory_pool_limit(self, kind, size):
        pass

    def create_timing_cache(self, data):
        return SimpleNamespace(data=data)

    def set_timing_cache(self, cache, ignore_mismatch):
        return True

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def get_timing_cache(self):
        return SimpleNamespace(serialize=lambda: b"timings")


class _Builder:
    def __init__(self, fake, log):
        self.fake = fake

    def create_network(self, flags):
        return _Network()

    def create_builder_config(self):
        return _Config(self.fake)

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        profiles = [p.shapes for p in config.profiles]
        self.fake.built.append({"onnx": network.path, "inputs": {t.name: t.shape for t in network.inputs},
                                "profiles": profiles})
        return json.dumps({"onnx": network.path, "profiles": profiles}).encode()


class _Context:
    """Runs the engine's ONNX with ONNX Runtime at the shapes set, on the buffers at the bound addresses."""

    def __init__(self, engine):
        self.engine, self.addresses, self.shapes, self.log = engine, {}, {}, engine.fake.log

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        self.log.append(("address", name, ptr))

    def set_input_shape(self, name, shape):
        self.log.append(("shape", name, tuple(shape)))
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        if not lo[0] <= shape[0] <= hi[0]:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def execute_async_v3(self, stream):
        e, memory = self.engine, self.engine.fake.memory
        batch = None
        for name in e.inputs:
            if e.dims[name][0] < 0:
                assert name in self.shapes, f"execute before set_input_shape({name!r})"
                batch = self.shapes[name][0]
        self.log.append(("execute", e.name, batch))

        def at(name):
            buf = memory[self.addresses[name]]
            return buf if batch is None else buf[:batch]

        outs = e.session.run(e.outputs, {n: at(n).numpy() for n in e.inputs})
        for name, value in zip(e.outputs, outs):
            at(name).copy_(torch.from_numpy(value))
        return True


class _Engine:
    def __init__(self, fake, plan):
        import onnxruntime as ort

        self.fake, self.plan = fake, plan
        self.name = plan["onnx"].rsplit("/", 1)[-1]
        self.session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
        self.inputs = [a.name for a in self.session.get_inputs()]
        self.outputs = [a.name for a in self.session.get_outputs()]
        self.dims = {a.name: tuple(d if isinstance(d, int) else -1 for d in a.shape)
                     for a in (*self.session.get_inputs(), *self.session.get_outputs())}

    @property
    def num_io_tensors(self):
        return len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, i):
        return (self.inputs + self.outputs)[i]

    def get_tensor_mode(self, name):
        return "input" if name in self.inputs else "output"

    def get_tensor_dtype(self, name):
        return np.float32

    def get_tensor_shape(self, name):
        return self.dims[name]

    def get_tensor_profile_shape(self, name, profile):
        return [tuple(s) for s in self.plan["profiles"][profile][name]]

    def create_execution_context(self):
        return _Context(self)


class _Runtime:
    def __init__(self, fake, log):
        self.fake = fake

    def deserialize_cuda_engine(self, data):
        return _Engine(self.fake, json.loads(data))


def _fake_trt() -> types.ModuleType:
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.99.0-fake"
    fake.built, fake.log, fake.memory = [], [], {}
    fake.ILogger = _Logger
    fake.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=0)
    fake.MemoryPoolType = SimpleNamespace(WORKSPACE=0)
    fake.TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")
    fake.nptype = lambda dtype: dtype
    fake.Builder = lambda log: _Builder(fake, log)
    fake.OnnxParser = _Parser
    fake.Runtime = lambda log: _Runtime(fake, log)
    return fake


class _Stream:
    cuda_stream = 0

    def wait_stream(self, other):
        pass

    def synchronize(self):
        pass


class _FakeTorch:
    """torch with a CPU ``cuda``: buffers are CPU tensors, registered by address for the fake engine."""

    def __init__(self, memory):
        self.memory, self.allocated = memory, []
        self.cuda = SimpleNamespace(device=lambda d: contextlib.nullcontext(), Stream=lambda device=None: _Stream(),
                                    stream=lambda s: contextlib.nullcontext(), current_stream=lambda d=None: _Stream())

    def device(self, kind, index=None):
        return torch.device("cpu")

    def empty(self, shape, dtype, device):
        t = torch.empty(shape, dtype=dtype)
        self.memory[t.data_ptr()] = t
        self.allocated.append(tuple(shape))
        return t

    def __getattr__(self, name):
        return getattr(torch, name)


@pytest.fixture
def fake_trt(monkeypatch):
    fake = _fake_trt()
    fake.torch = _FakeTorch(fake.memory)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_builder, "_LOGGER", None)
    monkeypatch.setattr(trt_builder, "_current_device", lambda index: contextlib.nullcontext())
    monkeypatch.setattr(trt_runner, "_modules", lambda: (fake, fake.torch))
    return fake


GPU = DeviceRecord(tag="cuda0-fake-sm90", kind="cuda", name="Fake GPU", index=0, compute_capability="9.0")


def _build(fake, d, manifest, tmp_path, opt=None):
    """Every subgraph (and the whole graph) built with the fake TensorRT; their plan paths."""
    profile = (BOUNDS[0], BOUNDS[1] if opt is None else opt, BOUNDS[1])
    options = BuildOptions(timing_cache=str(tmp_path / "cache"), profile=profile)
    plans = {}
    for spec in (manifest.whole, *manifest.subgraphs):
        plans[spec.name] = tmp_path / f"{spec.name}.plan"
        trt_builder.build(d / spec.file, plans[spec.name], GPU, options)
    return plans


def test_tensorrt_builder_sets_one_profile_per_dynamic_input_and_keys_the_timing_cache(dyn, fake_trt, tmp_path):
    d, manifest = dyn
    _build(fake_trt, d, manifest, tmp_path, opt=2)
    specs = (manifest.whole, *manifest.subgraphs)
    assert len(fake_trt.built) == len(specs)
    for spec, built in zip(specs, fake_trt.built):
        assert len(built["profiles"]) == 1  # one optimization profile
        for t in spec.inputs:  # min/opt/max of every input, dim 0 only
            rest = tuple(t.shape[1:])
            assert built["inputs"][t.name] == (-1, *rest)
            assert built["profiles"][0][t.name] == ((1, *rest), (2, *rest), (4, *rest))
    cache = trt_builder.timing_cache_path(str(tmp_path / "cache"), GPU, fake_trt.__version__, (1, 2, 4))
    assert cache.name.endswith("-b1-2-4.cache") and cache.read_bytes() == b"timings"
    static = trt_builder.timing_cache_path(str(tmp_path / "cache"), GPU, fake_trt.__version__)
    assert static != cache and "-b" not in static.name  # a static build keeps its own cache


def test_tensorrt_builder_refuses_a_profile_that_does_not_fit_the_onnx(dyn, fake_trt, tmp_path):
    d, manifest = dyn
    with pytest.raises(UserError, match=r"dynamic batch, but the build has no batch profile"):
        trt_builder.build(d / manifest.whole.file, tmp_path / "a.plan", GPU, BuildOptions())
    network = _Network()
    network.inputs.append(SimpleNamespace(name="image", shape=(1, 3, 32, 32)))
    with pytest.raises(UserError, match=r"no input of the ONNX has a dynamic dim 0"):
        trt_builder.add_profile(_Builder(fake_trt, None), network, _Config(fake_trt), (1, 2, 4))
    trt_builder.add_profile(_Builder(fake_trt, None), network, config := _Config(fake_trt), None)
    assert config.profiles == []  # static: TensorRT's default profile
    network.inputs[0] = SimpleNamespace(name="image", shape=(-1, 3, -1, 32))
    with pytest.raises(UserError, match=r"only dim 0 \(the batch\) may be dynamic"):
        trt_builder.add_profile(_Builder(fake_trt, None), network, _Config(fake_trt), (1, 2, 4))


def test_tensorrt_runner_sizes_buffers_at_the_max_and_sets_each_calls_shape(dyn, fake_trt, tmp_path):
    d, manifest = dyn
    plans = _build(fake_trt, d, manifest, tmp_path)
    r = trt_runner.TensorRTRunner(plans["model"], manifest.whole, 0)
    assert r.spec.inputs[0].batch == BatchDim(1, 4)
    assert sorted(fake_trt.torch.allocated) == sorted(t.max_shape for t in (*manifest.whole.inputs,
                                                                             *manifest.whole.outputs))
    assert all(s[0] == 4 for s in fake_trt.torch.allocated)  # sized for the largest batch, once
    bound = {e[1]: e[2] for e in fake_trt.log if e[0] == "address"}
    assert bound == {n: b.data_ptr() for n, b in r.buffers.items()}  # bound once, at load
    reference = runtime.load(d)
    fake_trt.log.clear()
    x = _images(3)
    got = _rows_match(lambda v: r.infer({"image": v})["logits"], x)
    assert rel_err(got, reference(x)) <= 1e-5
    shapes = [e[2][0] for e in fake_trt.log if e[0] == "shape"]
    assert shapes == [3, 1]  # set when the batch changes: 3, then 1 for the three rows
    assert [e[2] for e in fake_trt.log if e[0] == "execute"] == [3, 1, 1, 1]
    assert not [e for e in fake_trt.log if e[0] == "address"]  # views of the buffers keep their address
    assert rel_err(np.array(r.infer({"image": _images(4)})["logits"]), reference(_images(4))) <= 1e-5
    with pytest.raises(UserError, match=OUT_OF_BOUNDS) as e:
        r.infer({"image": _images(5)})
    assert "\n" not in str(e.value)
    out = r.infer_tensors({"image": torch.from_numpy(_images(2))})  # the DeviceRunner path (distributed)
    assert out["logits"].shape[0] == 2 and rel_err(out["logits"].numpy(), reference(_images(2))) <= 1e-5
    with pytest.raises(UserError, match=OUT_OF_BOUNDS):
        r.infer_tensors({"image": torch.from_numpy(_images(5))})
    r.close()


def test_tensorrt_runner_refuses_an_engine_built_for_other_bounds(dyn, fake_trt, tmp_path):
    d, manifest = dyn
    plan = tmp_path / "model.plan"
    trt_builder.build(d / manifest.whole.file, plan, GPU, BuildOptions(profile=(1, 8, 8)))
    with pytest.raises(ExportError, match=r"the engine's batch profile is 1\.\.8, the manifest says 1\.\.4"):
        trt_runner.TensorRTRunner(plan, manifest.whole, 0)


# -- the CUDA-stream executor with CPU tensors for device memory -----------------------------------------
class CpuCuda:
    """:class:`CudaApi` on CPU torch tensors (events are host clocks; streams are placeholders)."""

    def __init__(self):
        self.ops = []

    def stream(self, device):
        return _Stream()

    def event(self, timing):
        return SimpleNamespace(t=0.0)

    def record(self, event, stream):
        event.t = time.perf_counter()

    def wait(self, stream, event):
        pass

    def copy(self, dst, src, stream):
        self.ops.append(("copy", tuple(dst.shape)))
        dst.copy_(src)

    def upload(self, dst, host, stream):
        self.ops.append(("upload", tuple(dst.shape)))
        dst.copy_(torch.from_numpy(np.ascontiguousarray(host)).to(dst.dtype))

    def download(self, src, stream):
        self.ops.append(("download", tuple(src.shape)))
        return src.float().numpy().copy()

    def synchronize(self, event):
        pass

    def elapsed_ms(self, start, end):
        return (end.t - start.t) * 1e3

    def same_buffer(self, a, b):
        return a.data_ptr() == b.data_ptr()

    def rows(self, buffer, n):
        return buffer[:n]


def _torch_runner(d):
    backend = get_backend("torch", threads=1)

    def load(spec, concurrency):
        r = backend.load(d / spec.file, spec)
        r.buffers = r.stream_buffers()  # what a CUDA device gets at load; CPU tensors here
        return r

    return load


def _trt_runner(fake, plans):
    return lambda spec, concurrency: trt_runner.TensorRTRunner(plans[spec.name], spec, 0)


@pytest.mark.parametrize("whole", [False, True], ids=["streams", "whole"])
@pytest.mark.parametrize("kind", ["torch", "tensorrt-fake"])
def test_cuda_streams_executor_runs_any_batch_on_max_size_buffers(dyn, fake_trt, tmp_path, kind, whole):
    d, manifest = dyn
    load = _torch_runner(d) if kind == "torch" else _trt_runner(fake_trt, _build(fake_trt, d, manifest, tmp_path))
    cuda = CpuCuda()
    ex = CudaStreamsExecutor(manifest, load, cuda=cuda, whole=whole)
    for r in ex.runners.values():
        assert all(b.shape[0] == 4 for b in r.buffers.values())  # the max, once
    reference = runtime.load(d)
    x = _images(3, seed=2)
    got = _rows_match(lambda v: ex.infer({"image": v})["logits"], x)
    assert rel_err(got, reference(x)) <= 1e-5
    assert rel_err(ex.infer({"image": _images(4)})["logits"], reference(_images(4))) <= 1e-5
    assert {op[1][0] for op in cuda.ops} == {3, 1, 4}  # every upload, copy and download is a view at the batch
    if kind == "tensorrt-fake":
        assert {e[2] for e in fake_trt.log if e[0] == "execute"} >= {1, 3, 4}
    before = len(cuda.ops)
    with pytest.raises(UserError, match=OUT_OF_BOUNDS):
        ex.infer({"image": _images(5)})
    assert len(cuda.ops) == before  # refused before anything is queued
    ex.close()


def test_cuda_graph_with_a_dynamic_export_is_refused_in_one_line(dyn):
    d, manifest = dyn
    loaded = []

    def load(spec, concurrency):
        loaded.append(spec.name)
        return _torch_runner(d)(spec, concurrency)

    with pytest.raises(UserError, match=r"cuda_graph needs static shapes.*batch is 1\.\.4") as e:
        CudaStreamsExecutor(manifest, load, cuda_graph=True, cuda=CpuCuda())
    assert "\n" not in str(e.value) and loaded == []  # before any runner is loaded


# -- the torch backend on the CPU ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_torch_backend_runs_any_batch_within_the_bounds(dyn, mode):
    d, manifest = dyn
    with runtime.load(d, backend="torch", mode=mode) as tb, runtime.load(d) as ort:
        x = _images(3, seed=3)
        assert rel_err(_rows_match(tb, x), ort(x)) <= 1e-5
        assert tb(_images(4)).shape == (4, 10) and tb(_images(1)).shape == (1, 10)
        with pytest.raises(UserError, match=OUT_OF_BOUNDS) as e:
            tb(_images(5))
        assert "\n" not in str(e.value)
