import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY, randomize_bn

import parnet_deploy as pd
from parnet_deploy.bench.stats import LatencyStats
from parnet_deploy.export import ExportConfig, export_model

FAST = ["--warmup", "0.1", "--iterations", "8", "--duration", "0.2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY))
    ckpt = pd.save_checkpoint(model, root / "tiny.pt")
    d, _ = export_model(model, ExportConfig(output=root, name="tiny", resolution=(64, 64), split="shared",
                                            verify=False), log=lambda _: None)
    return root, ckpt, d


def _bench(*args, cwd):
    return subprocess.run([sys.executable, "-m", "parnet_deploy.cli.bench", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def test_latency_stats_are_ordered():
    s = LatencyStats.from_seconds(np.random.default_rng(0).gamma(4.0, 0.002, 500))
    assert s.min <= s.median <= s.p90 <= s.p95 <= s.p99 <= s.max and s.min <= s.mean <= s.max
    assert s.count == 500 and 0 < s.cv < 1
    assert s.throughput_qps == pytest.approx(1e3 / s.mean)


@pytest.mark.parametrize("mode", ["whole", "streams"])
def test_engine_bench_json(tiny, mode):
    root, _, d = tiny
    out, png = root / f"{mode}.json", root / f"{mode}.png"
    r = _bench("--engine", d, "--mode", mode, *FAST, "--json", out, "--plot", png, cwd=root)
    assert r.returncode == 0, r.stderr
    assert "latency ms" in r.stdout and "critical path" in r.stdout
    data = json.loads(out.read_text())
    lat = data["latency_ms"]
    assert set(lat) == {"min", "mean", "median", "p90", "p95", "p99", "max", "cv"}
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert data["iterations"] >= 8 and data["throughput_qps"] == pytest.approx(1e3 / lat["mean"])
    names = [s["name"] for s in data["stages"]]
    if mode == "whole":
        assert names == ["model"]
    else:
        assert names == ["stem", "stream0", "stream1", "stream2", "fusion"]
        assert data["critical_path"]["stages"][0] == "stem" and data["critical_path"]["stages"][-1] == "fusion"
        assert data["critical_path"]["ms"] <= lat["max"]
        assert "stem->stream0" in data["handoffs_ms"]
    env = data["environment"]
    assert env["cores"] >= 1 and env["cpu"] and env["libraries"]["onnxruntime"]
    assert env["runtime"]["allow_spinning"] == "0"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_openvino_streams_bench_follows_the_waves(tiny):
    """On 2 threads OpenVINO runs the streams in waves: the report says so, hands over from each member of a
    wave to each of the next, and judges overhead against the waves (each as long as its longest member)."""
    root, _, d = tiny
    out = root / "waves.json"
    r = _bench("--engine", d, "--mode", "streams", "--backend", "openvino", "--threads", "2", *FAST,
               "--json", out, cwd=root)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["schedule"] == "waves of up to 2" and "waves of up to 2" in r.stdout
    assert set(data["handoffs_ms"]) == {"stem->stream0", "stem->stream1", "stream0->stream2", "stream1->stream2",
                                        "stream2->fusion"}
    stage = {s["name"]: s for s in data["stages"]}
    assert stage["stream0"]["start_ms"] == stage["stream1"]["start_ms"]  # a wave starts together
    assert stage["stream2"]["start_ms"] >= stage["stream1"]["start_ms"] + stage["stream1"]["median_ms"] * 0.5


def test_schedule_waves():
    from types import SimpleNamespace

    from parnet_deploy.bench.engine import schedule_waves

    manifest = SimpleNamespace(subgraphs=[SimpleNamespace(name=n) for n in ("a", "b", "c")])
    assert schedule_waves(SimpleNamespace(workers=1), manifest, "streams") == (("a",), ("b",), ("c",))
    assert schedule_waves(SimpleNamespace(workers=2), manifest, "streams") is None  # as the DAG allows
    assert schedule_waves(SimpleNamespace(workers=2, waves=(("a",), ("b", "c"))), manifest, "streams") == (
        ("a",), ("b", "c"))
    assert schedule_waves(SimpleNamespace(workers=1), manifest, "whole") is None


def test_compare_rows(tiny):
    root, ckpt, _ = tiny
    out = root / "cmp.json"
    r = _bench("--compare", ckpt, "--resolution", "64", *FAST, "--json", out, cwd=root)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["name"] for row in rows] == [
        "torch train form (unfused, eager)", "torch deploy form (eager)",
        "onnxruntime whole graph", "onnxruntime streams (replicated)",
        "openvino whole graph", "openvino streams (replicated)",
        "onnxruntime streams (shared)", "openvino streams (shared)"]
    assert rows[0]["speedup_vs_unfused"] == 1.0
    for row in rows:
        assert row["max_rel_err_vs_train"] <= 1e-4
        assert row["latency_ms"]["median"] <= row["latency_ms"]["p99"]
        assert row["speedup_vs_unfused"] == pytest.approx(rows[0]["latency_ms"]["median"] / row["latency_ms"]["median"])


@pytest.mark.parametrize("args, message", [
    (["--engine", "nowhere"], "export directory not found"),
    (["--engine", "DIR", "--json", "/nonexistent/x.json"], "is not a directory"),
    (["--engine", "DIR", "--warmup", "-1"], "expected a finite number of seconds >= 0"),
    (["--engine", "DIR", "--duration", "nan"], "expected a finite number of seconds >= 0"),
    (["--engine", "DIR", "--warmup", "inf"], "expected a finite number of seconds >= 0"),
    (["--engine", "DIR", "--json", "."], "is a directory"),
    (["--engine", "DIR", "--plot", "x.txt"], "expected a .png or .svg or .pdf file"),
    (["--compare", "missing.pt"], "checkpoint not found"),
    (["--engine", "DIR", "--cuda-graph"], "CUDA graphs need a backend that enqueues on CUDA streams"),
    (["--engine", "DIR", "--mode", "distributed", "--cuda-graph"], "cuda_graph applies to the whole and streams"),
    (["--engine", "DIR", "--precision", "fp16"], "(bf16 with onnxruntime) or must match"),
    (["--engine", "DIR", "--device", "cuda:x"], "unknown device 'cuda:x'"),
])
def test_bench_user_errors(tiny, args, message):
    root, _, d = tiny
    r = _bench(*[str(d) if a == "DIR" else a for a in args], cwd=root)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_a_replayed_graph_is_its_own_critical_path():
    from parnet_deploy.bench.engine import StageSummary, critical_path

    graph = [StageSummary("cuda-graph", 1.5, 1.7, 0.0)]
    assert critical_path(None, graph, "streams") == (["cuda-graph"], 1.5)


def test_environment_records_the_kernel_flags_in_a_fixed_order():
    """Benchmarks record the flags that pick oneDNN's int8/bf16 kernels (VNNI, BF16, AMX) beside the CPU model;
    a flag is matched whole (``avx512_vnni_x`` is not ``avx512_vnni``)."""
    from parnet_deploy import hardware
    from parnet_deploy.bench.environment import describe_cpu, environment

    text = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512_bf16 avx2 sse avx512_vnni_x avx512_vnni\n"
    assert hardware.kernel_flags(text) == ("avx2", "avx512_vnni", "avx512_bf16")
    assert describe_cpu({"cpu": "AMD EPYC", "cpu_flags": ["avx2", "avx512_vnni"]}) == "AMD EPYC (avx2, avx512_vnni)"
    assert describe_cpu({"cpu": "Ampere Altra"}) == "Ampere Altra"
    env = environment()
    assert env["cpu_flags"] == list(hardware.kernel_flags()) and set(env["cpu_flags"]) <= set(hardware.KERNEL_FLAGS)
