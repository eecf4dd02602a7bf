"""The native library's decisions shared with the Python runtime are the Python runtime's.

capi/src/policy.cpp re-states, in C++, what parnet_deploy decides: the CPU name engines record
(hardware.cpu_model, with its fallback when /proc/cpuinfo has no "model name"), native bf16
(hardware.native_bf16), OpenVINO's precision hint (backends/openvino/config.py) and how many
subgraphs run at once with how many threads each (runtime/executors.py with the OpenVINO
backend's load). A test tool of capi/ (tools/policy_probe.cpp, never installed) prints the C++
decisions; each is compared with the Python function's on a table of inputs, crafted cpuinfo
texts included.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from parnet_deploy import hardware
from parnet_deploy.backends.openvino import backend as ov_backend
from parnet_deploy.backends.openvino import config as ov_config
from parnet_deploy.backends.openvino.chain import ChainedStreamsExecutor
from parnet_deploy.errors import UserError
from parnet_deploy.runtime.executors import EXECUTORS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(None in [shutil.which(t) for t in ("cmake", "c++")],
                                reason="needs cmake and c++ (make capi-deps)")

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse2 avx512f avx512_bf16 amx_tile
bugs\t\t: spectre_v1

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse2 avx512f avx512_bf16 amx_tile
"""
ARM64 = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""
CPUINFO = {
    "intel_bf16": INTEL,
    "amd_no_bf16": "model name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu avx2 avx512f\n",
    "amx_only": "model name : X\nflags : fpu amx_bf16 amx_tile\n",
    "arm64_no_model_name": ARM64,  # the fallback: the machine name
    "empty": "",
    "empty_model_name": "model name\t:\nflags\t: fpu\n",
    "blank_model_name": "model name\t:   \t\nflags\t: fpu\n",
    "first_processor_wins": "model name: First\nflags: avx512_bf16\nmodel name: Second\nflags: fpu\n",
    "flag_substrings": "model name: Y\nflags: fpu xavx512_bf16 avx512_bf16x amx_bf16_ amx-bf16\n",
    "indented_key": "   model name   :   Spaced Out   \n  flags : amx_bf16\n",
    "longer_key": "model names: not this\nmodel name extra: nor this\nflags: fpu\n",
    "crlf": "model name\t: Windows Lines\r\nflags\t: fpu avx512_bf16\r\n",
    "colon_in_value": "model name\t: Vendor: Model 9\nflags\t: fpu\n",
    "utf8": "model name\t: Intel\u00ae Xeon\u00ae \u00e9\nflags\t: fpu\n",
    "tabs_in_flags": "model name\t: Z\nflags\t:\tfpu\tamx_bf16\t\n",
    "flags_without_colon": "model name\t: W\nflags avx512_bf16\n",
    "no_trailing_newline": "model name\t: Last Line",
    "vertical_space": "model name\t:\x0b\x0cFeed\x0c\nflags\t: fpu\x0bavx512_bf16\n",
}
MODES = ("whole", "streams")
WIDTHS = (1, 2, 3, 4, 6)
THREADS = (1, 2, 3, 4, 5, 7, 8, 16, 63, 1024)


def _openvino_cmake() -> str:
    import openvino

    return str(Path(openvino.__file__).parent / "cmake")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("policy-probe")
    subprocess.run(["cmake", "-S", str(ROOT / "capi"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    f"-DOpenVINO_DIR={_openvino_cmake()}"], check=True, capture_output=True)
    r = subprocess.run(["cmake", "--build", str(build), "--target", "parnet_rt_policy_probe", "-j2"],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return build / "parnet_rt_policy_probe"


def _ask(probe: Path, *args: str) -> list[dict]:
    r = subprocess.run([str(probe), *args], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_cpu_model_and_bf16_of_crafted_cpuinfo_are_pythons(probe, tmp_path):
    args = []
    for name, text in CPUINFO.items():
        (tmp_path / name).write_bytes(text.encode())
        args += ["cpuinfo", str(tmp_path / name)]
    got = dict(zip(CPUINFO, _ask(probe, *args)))
    for name, text in CPUINFO.items():
        want = {"cpu_model": hardware.cpu_model(text), "native_bf16": hardware.native_bf16(text)}
        assert got[name] == want, (name, got[name], want)
    # the cases mean what they say
    fallback = platform.machine()
    assert fallback and got["arm64_no_model_name"]["cpu_model"] == fallback
    assert got["empty"]["cpu_model"] == got["empty_model_name"]["cpu_model"] == fallback
    assert got["intel_bf16"] == {"cpu_model": "Intel(R) Xeon(R) Platinum 8480+", "native_bf16": True}
    assert got["amx_only"]["native_bf16"] and not got["flag_substrings"]["native_bf16"]
    assert got["first_processor_wins"] == {"cpu_model": "First", "native_bf16": True}
    assert got["indented_key"] == {"cpu_model": "Spaced Out", "native_bf16": True}
    assert got["longer_key"]["cpu_model"] == fallback
    assert got["crlf"] == {"cpu_model": "Windows Lines", "native_bf16": True}
    assert got["colon_in_value"]["cpu_model"] == "Vendor: Model 9"
    assert not got["flags_without_colon"]["native_bf16"]


def test_this_machine_is_described_alike(probe):
    (host,) = _ask(probe, "host")
    assert host["cpu_model"] == hardware.cpu_model() and host["native_bf16"] == hardware.native_bf16()
    assert host["machine"] == platform.machine()
    # no threads asked for: every CPU (the Python backends' default)
    assert host["default_threads"] == ov_backend.OpenVinoBackend().threads == os.cpu_count()


def test_precision_hints_are_pythons(probe, monkeypatch):
    (hints,) = _ask(probe, "hints")
    assert hints == ov_config.PRECISION_HINTS
    monkeypatch.setattr(hardware, "native_bf16", lambda cpuinfo=None: True)  # bf16 asked on any CPU
    got = _ask(probe, *[a for p in (*hints, "fp8", "f32", "") for a in ("hint", p)])
    for precision, answer in zip((*hints, "fp8", "f32", ""), got):
        if precision in hints:
            assert answer["hint"] == ov_config.precision_hint(precision, "CPU") == hints[precision]
        else:  # unknown: the Python backend refuses it; the library has no hint for it (prt_open refuses)
            assert answer["hint"] == ""
            with pytest.raises(UserError):
                ov_config.precision_hint(precision, "CPU")


def test_bf16_is_refused_where_the_cpu_has_none(monkeypatch):
    """Python's refusal follows hardware.native_bf16, the decision held equal above."""
    for name in ("amd_no_bf16", "intel_bf16", "arm64_no_model_name"):
        monkeypatch.setattr(hardware, "_cpuinfo", lambda text=CPUINFO[name]: hardware.parse_cpuinfo(text))
        if hardware.native_bf16():
            assert ov_config.precision_hint("bf16", "CPU") == "bf16"
        else:
            with pytest.raises(UserError, match="native bf16"):
                ov_config.precision_hint("bf16", "CPU")


def _python_concurrency(monkeypatch, mode: str, width: int, threads: int) -> dict:
    """What the Python runtime does: the OpenVINO backend's executor for `mode` (its own chain, or the
    generic one) over a manifest of `width` independent subgraphs, each loaded through the backend
    (compilation stubbed): how many the DAG scheduler runs at once, the runs of side-by-side subgraphs,
    and each graph's threads in the order they are loaded."""
    monkeypatch.setattr(ov_backend.builder, "compile_onnx", lambda path, device, config, batch=None: None)
    monkeypatch.setattr(ov_backend, "OpenVinoRunner",
                        lambda compiled, spec, config, compile_batch=None: SimpleNamespace(config=config,
                                                                                            close=lambda: None))
    backend = ov_backend.OpenVinoBackend(threads=threads)
    out, inp = [SimpleNamespace(name="y")], [SimpleNamespace(name="x", batch=None)]  # batch: static shapes
    subgraphs = [SimpleNamespace(name=f"s{i}", file=f"s{i}.onnx", inputs=inp, outputs=[]) for i in range(width)]
    dag = SimpleNamespace(width=width, levels=lambda: (tuple(s.name for s in subgraphs),),
                          spec=lambda name: next(s for s in subgraphs if s.name == name))
    manifest = SimpleNamespace(whole=SimpleNamespace(name="whole", file="whole.onnx", inputs=inp, outputs=out),
                               subgraphs=subgraphs, dag=dag)
    runners = []

    def load_runner(spec, concurrency):
        runners.append(backend.load(Path(spec.file), spec, concurrency=concurrency))
        return runners[-1]

    executor = (backend.executor(mode, manifest, load_runner)
                or EXECUTORS[mode](manifest, load_runner, backend.parallelism))
    executor.close()
    chained = isinstance(executor, ChainedStreamsExecutor)
    runs = [len(w) for w in executor.waves] if chained else [1] * len(runners)
    return {"graphs": 1 if chained else executor.workers, "runs": runs,
            "threads": [int(r.config["INFERENCE_NUM_THREADS"]) for r in runners]}


def test_concurrency_and_threads_are_pythons(probe, monkeypatch):
    table = [(m, w, t) for m in MODES for w in WIDTHS for t in THREADS]
    got = _ask(probe, *[str(a) for row in table for a in ("concurrency", *row)])
    for row, answer in zip(table, got):
        assert {k: answer[k] for k in ("graphs", "runs", "threads")} == _python_concurrency(monkeypatch, *row), row
    # the rules themselves: concurrent subgraphs keep at least 2 threads each; on fewer than 4 threads a
    # level's subgraphs run side by side in runs of up to the threads, sharing them
    answers = dict(zip(table, got))
    assert answers[("streams", 3, 4)] == {"graphs": 2, "graph_threads": 2, "runs": [1, 1, 1], "threads": [2, 2, 2]}
    assert answers[("streams", 6, 16)] == {"graphs": 6, "graph_threads": 2, "runs": [1] * 6, "threads": [2] * 6}
    assert answers[("whole", 6, 16)] == {"graphs": 1, "graph_threads": 16, "runs": [1], "threads": [16]}
    assert answers[("streams", 3, 2)] == {"graphs": 1, "graph_threads": 2, "runs": [2, 1], "threads": [1, 1, 2]}
    assert answers[("streams", 4, 3)] == {"graphs": 1, "graph_threads": 3, "runs": [3, 1], "threads": [1, 1, 1, 3]}
    assert answers[("streams", 3, 1)] == {"graphs": 1, "graph_threads": 1, "runs": [1, 1, 1], "threads": [1, 1, 1]}
