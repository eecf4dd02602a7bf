"""Engine builds: the engines manifest, compatibility checks, tampering, backend choice, the build CLI."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import engine_input as _x
from conftest import rel_err

from parnet_deploy import runtime
from parnet_deploy.artifacts.engines_manifest import (
    BackendRecord,
    DeviceRecord,
    EngineIncompatibleError,
    check_compatible,
    load_engines,
)
from parnet_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner
from parnet_deploy.backends.openvino.runner import OpenVinoRunner
from parnet_deploy.engines import build as B
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.errors import ExportError, ParnetError
from parnet_deploy.export import load_manifest


@pytest.fixture(scope="module")
def exports(engine_exports):
    return engine_exports


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def engines(exports, request):
    root, dirs = exports
    d, manifest = build_engines(dirs["shared"], BuildConfig(backend=request.param, output=root / request.param,
                                                            measure_iterations=3), log=lambda _: None)
    return d, manifest


def _build_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "parnet_deploy.cli.build", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


SUFFIX = {"onnxruntime": ".ort.onnx", "openvino": ".blob"}


def test_build_round_trip(exports, engines):
    _, dirs = exports
    d, manifest = engines
    backend = manifest.backend.name
    assert manifest.backend.version and manifest.precision == "fp32" and manifest.options.precision == "fp32"
    assert manifest.devices["cpu"].kind == "cpu" and manifest.devices["cpu"].name
    assert manifest.placement == {n: "cpu" for n in ("model", "stem", "stream0", "stream1", "stream2", "fusion")}
    export = load_manifest(dirs["shared"])
    assert manifest.sources == {f: s.sha256 for f, s in export.files.items()}
    assert set(manifest.files) == {f"cpu/{n}{SUFFIX[backend]}" for n in manifest.placement}
    assert load_engines(d) == manifest
    reference = runtime.load(dirs["shared"])(_x())
    for mode in ("whole", "streams"):
        with runtime.load(d, mode=mode) as run:
            assert rel_err(run(_x()), reference) <= 1e-5


def test_engine_dir_bench(engines, tmp_path):
    d, _ = engines
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.bench", "--engine", str(d), "--mode", "streams",
                        "--warmup", "0.1", "--iterations", "5", "--duration", "0.1", "--json", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["latency_ms"]["median"] > 0


def _copy(d, tmp_path):
    c = tmp_path / "copy"
    shutil.copytree(d, c)
    return c


def _edit(d, fn):
    raw = json.loads((d / "engines.json").read_text())
    fn(raw)
    (d / "engines.json").write_text(json.dumps(raw))


def test_other_backend_version_is_refused_with_rebuild_message(engines, tmp_path):
    d = _copy(engines[0], tmp_path)
    _edit(d, lambda raw: raw["backend"].update(version="0.0.1"))
    backend = engines[1].backend.name
    with pytest.raises(EngineIncompatibleError, match=rf"built with {backend} 0\.0\.1.*rebuild with: parnet-build"):
        runtime.load(d)


def test_other_cpu_is_refused(engines, tmp_path):
    d = _copy(engines[0], tmp_path)
    _edit(d, lambda raw: raw["devices"]["cpu"].update(name="Some Other CPU"))
    with pytest.raises(EngineIncompatibleError, match="optimized for Some Other CPU; this CPU is"):
        runtime.load(d)


def test_other_compute_capability_is_refused(engines):
    _, manifest = engines
    gpu = DeviceRecord("cuda0-nvidia-a100-sm80", "cuda", "NVIDIA A100", 0, "8.0", "GPU-1")
    m = replace(manifest, backend=BackendRecord("tensorrt", "10.3.0"),
                devices={gpu.tag: gpu}, placement={k: gpu.tag for k in manifest.placement})
    here = DeviceRecord("cuda0-nvidia-h100-sm90", "cuda", "NVIDIA H100", 0, "9.0", "GPU-2")
    with pytest.raises(EngineIncompatibleError, match=r"compute capability 8\.0 \(NVIDIA A100\); this GPU is 9\.0"):
        check_compatible(m, "10.3.0", {gpu.tag: here})
    with pytest.raises(EngineIncompatibleError, match=r"built with tensorrt 10\.3\.0, this is tensorrt 10\.5\.0"):
        check_compatible(m, "10.5.0", {gpu.tag: gpu})
    with pytest.raises(EngineIncompatibleError, match="no such device here"):
        check_compatible(m, "10.3.0", {gpu.tag: None})
    check_compatible(m, "10.3.0", {gpu.tag: replace(gpu, uuid="GPU-3")})  # same kind of GPU: fine


def test_tampered_engine_is_refused(engines, tmp_path):
    d = _copy(engines[0], tmp_path)
    engine = f"cpu/stream1{SUFFIX[engines[1].backend.name]}"
    with open(d / engine, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportError, match=f"{engine} has .* bytes"):
        load_engines(d)
    data = bytearray((d / engine).read_bytes()[:-1])
    data[len(data) // 2] ^= 0xFF
    (d / engine).write_bytes(bytes(data))
    with pytest.raises(ExportError, match=f"{engine} does not match its sha256"):
        load_engines(d)


def test_auto_keeps_the_measured_fastest(exports, tmp_path, monkeypatch):
    _, dirs = exports
    fake = {"onnxruntime": 7.0, "openvino": 3.0}
    backend_of = {OnnxRuntimeRunner: "onnxruntime", OpenVinoRunner: "openvino"}  # the runner each backend loads
    monkeypatch.setattr(B, "median_ms_interleaved",
                        lambda runners, iterations: [fake[backend_of[type(r)]] for r in runners])
    lines = []
    d, m = build_engines(dirs["shared"], BuildConfig(output=tmp_path, measure_iterations=1), log=lines.append)
    assert m.backend.name == "openvino" and (d / "cpu" / "model.blob").is_file()
    assert [(t.backend, t.median_ms, t.chosen) for t in m.selection] == [("onnxruntime", 7.0, False),
                                                                        ("openvino", 3.0, True)]
    assert any("onnxruntime 7.00 ms, openvino 3.00 ms -> openvino" in line for line in lines)
    fake.update(onnxruntime=1.0)
    _, m = build_engines(dirs["shared"], BuildConfig(output=tmp_path, measure_iterations=1, force=True),
                         log=lambda _: None)
    assert m.backend.name == "onnxruntime" and [t.chosen for t in m.selection] == [True, False]


def test_build_cli_errors(exports, tmp_path):
    root, dirs = exports
    r = _build_cli(tmp_path / "missing", cwd=tmp_path)
    assert r.returncode == 2 and "export directory not found" in r.stderr
    r = _build_cli(dirs["shared"], "--devices", "0,x", cwd=tmp_path)
    assert r.returncode == 2 and "--devices" in r.stderr
    r = _build_cli(dirs["shared"], "--placement", "nope.json", cwd=tmp_path)
    assert r.returncode == 2 and "--placement" in r.stderr
    r = _build_cli(dirs["shared"], "--backend", "tensorrt", "--devices", "0", cwd=tmp_path)
    assert r.returncode == 2 and "pip install" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "engines").exists() or os.listdir(tmp_path / "engines") == []


def test_tensorrt_on_an_export_explains(exports):
    _, dirs = exports
    with pytest.raises(ParnetError, match="tensorrt runs engines: parnet-build"):
        runtime.load(dirs["shared"], backend="tensorrt")


# -- on a GPU (skipped here) --------------------------------------------------------------------
@pytest.mark.tensorrt
def test_tensorrt_engines_match_onnxruntime(exports, tmp_path):
    _, dirs = exports
    d, _ = build_engines(dirs["shared"], BuildConfig(backend="tensorrt", output=tmp_path, measure_iterations=3),
                         log=lambda _: None)
    reference = runtime.load(dirs["shared"])(_x())
    for mode in ("whole", "streams"):
        with runtime.load(d, mode=mode) as run:
            assert rel_err(run(_x()), reference) <= 1e-3  # TF32 convolutions



def test_timing_caches_are_keyed_by_gpu_model_compute_capability_and_tensorrt_version():
    from parnet_deploy.backends.tensorrt.builder import timing_cache_path

    h100 = DeviceRecord(tag="cuda0", kind="cuda", name="NVIDIA H100 80GB HBM3", index=0, compute_capability="9.0")
    a100 = DeviceRecord(tag="cuda1", kind="cuda", name="NVIDIA A100-SXM4-40GB", index=1, compute_capability="8.0")
    path = timing_cache_path("caches", h100, "10.5.0")
    assert path.as_posix() == "caches/nvidia-h100-80gb-hbm3-sm90-trt10-5-0.cache"
    assert timing_cache_path("caches", h100, "10.5.0") == path  # reused by the next build on this GPU
    others = {timing_cache_path("caches", a100, "10.5.0"), timing_cache_path("caches", h100, "11.0.0"),
              timing_cache_path("caches", replace(h100, compute_capability="8.9"), "10.5.0")}
    assert path not in others and len(others) == 3
    assert timing_cache_path("caches", replace(h100, index=3, tag="cuda3"), "10.5.0") == path  # same model, any slot
