"""parnet-bench --batch N and --batch-sweep on tiny dynamic and static exports."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import TINY_SMALL_INPUT, randomize_bn

import parnet_deploy as pd
from parnet_deploy.bench.stats import LatencyStats
from parnet_deploy.export import ExportConfig, export_model

FAST = ["--warmup", "0.05", "--iterations", "4", "--duration", "0.1"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_batch")
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY_SMALL_INPUT))
    dirs = {}
    for name, batch in (("dyn", (1, 4)), ("static2", (2, 2))):
        dirs[name], _ = export_model(model, ExportConfig(output=root, name=name, resolution=(32, 32), split="shared",
                                                         verify=False, torch_weights=False, batch=batch),
                                     log=lambda _: None)
    return root, dirs


def _bench(*args, cwd):
    return subprocess.run([sys.executable, "-m", "parnet_deploy.cli.bench", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def test_per_image_stats_divide_every_time_by_the_batch():
    s = LatencyStats(1.0, 2.0, 1.8, 3.0, 3.5, 4.0, 5.0, 0.2, 10)
    img = s.per_image(4)
    assert (img.min, img.mean, img.median, img.p99, img.max) == (0.25, 0.5, 0.45, 1.0, 1.25)
    assert img.cv == s.cv and img.count == s.count
    assert s.images_per_s(4) == 4 * s.throughput_qps == 2000.0


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_batch_n_reports_per_image_latency_and_images_per_s(exports, backend):
    pytest.importorskip(backend)
    root, dirs = exports
    out = root / f"b3_{backend}.json"
    r = _bench("--engine", dirs["dyn"], "--backend", backend, "--threads", "1", "--batch", "3", *FAST,
               "--json", out, cwd=root)
    assert r.returncode == 0, r.stderr
    assert "batch 3" in r.stdout and "per image" in r.stdout and "images/s" in r.stdout
    data = json.loads(out.read_text())
    lat, img = data["latency_ms"], data["per_image_latency_ms"]
    assert data["batch"] == 3 and data["iterations"] >= 4
    assert set(img) == set(lat) == {"min", "mean", "median", "p90", "p95", "p99", "max", "cv"}
    for k in ("min", "mean", "median", "p90", "p95", "p99", "max"):
        assert img[k] == lat[k] / 3
    assert img["cv"] == lat["cv"]
    assert data["throughput_qps"] == pytest.approx(1e3 / lat["mean"])
    assert data["images_per_s"] == 3 * data["throughput_qps"]


def test_default_batch_is_the_exports_smallest(exports):
    root, dirs = exports
    out = root / "default.json"
    assert _bench("--engine", dirs["dyn"], *FAST, "--json", out, cwd=root).returncode == 0
    data = json.loads(out.read_text())
    assert data["batch"] == 1 and data["images_per_s"] == data["throughput_qps"]
    out = root / "static.json"
    r = _bench("--engine", dirs["static2"], *FAST, "--json", out, cwd=root)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["batch"] == 2 and data["images_per_s"] == 2 * data["throughput_qps"]


def test_sweep_writes_table_json_and_plot(exports):
    root, dirs = exports
    out, png = root / "sweep.json", root / "sweep.png"
    r = _bench("--engine", dirs["dyn"], "--threads", "1", "--batch-sweep", "4,1,2,2", "--rounds", "2", *FAST,
               "--json", out, "--plot", png, cwd=root)
    assert r.returncode == 0, r.stderr
    table = r.stdout.splitlines()
    assert any("batch sweep" in line for line in table) and "images/s" in r.stdout
    body = [line.split() for line in table if line.strip()[:1].isdigit()]
    assert [int(cols[0]) for cols in body] == [1, 2, 4]
    data = json.loads(out.read_text())
    assert data["batches"] == [1, 2, 4] and data["rounds"] == 2
    rows = data["rows"]
    assert [row["batch"] for row in rows] == [1, 2, 4]
    base = rows[0]
    for row in rows:
        b, lat = row["batch"], row["latency_ms"]
        assert row["iterations"] >= 4
        assert row["per_image_latency_ms"]["median"] == lat["median"] / b
        assert row["images_per_s"] == b * row["throughput_qps"]
        assert row["throughput_qps"] == pytest.approx(1e3 / lat["mean"])
        assert row["images_per_s_vs_smallest"] == pytest.approx(row["images_per_s"] / base["images_per_s"])
        assert row["call_vs_sequential_smallest"] == pytest.approx(lat["median"] / (b * base["latency_ms"]["median"]))
    assert base["images_per_s_vs_smallest"] == 1.0 and base["call_vs_sequential_smallest"] == 1.0
    assert data["environment"]["cpu"]
    assert png.read_bytes()[:8] == PNG


@pytest.mark.parametrize("export, args, message", [
    ("dyn", ["--batch", "5"], "--batch 5 is outside the batch bounds 1..4"),
    ("dyn", ["--batch-sweep", "1,2,8"], "--batch-sweep 8 is outside the batch bounds 1..4"),
    ("static2", ["--batch", "1"], "--batch 1: export 'static2' has a static batch of 2"),
    ("static2", ["--batch-sweep", "1,2"], "--batch-sweep 1: export 'static2' has a static batch of 2"),
    ("dyn", ["--batch", "0"], "expected an integer"),
    ("dyn", ["--batch-sweep", "1,x"], "expected positive batches separated by commas"),
    ("dyn", ["--batch-sweep", "0,1"], "expected positive batches separated by commas"),
    ("dyn", ["--batch", "2", "--batch-sweep", "1,2"], "not allowed with argument"),
])
def test_batch_out_of_bounds_is_one_line(exports, export, args, message):
    root, dirs = exports
    r = _bench("--engine", dirs[export], *args, *FAST, cwd=root)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    if "not allowed" not in message and "expected" not in message:
        assert r.stderr.strip().count("\n") == 0 and r.stdout == ""


def test_compare_refuses_batch(exports, tmp_path):
    root, _ = exports
    r = _bench("--compare", tmp_path / "x.pt", "--batch", "2", cwd=root)
    assert r.returncode == 2 and "--batch and --batch-sweep apply to --engine" in r.stderr
