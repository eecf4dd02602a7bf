"""benchmarks/gpu_table3.py's arithmetic (targets, stream overlap, report) on synthetic rows, and its
refusal without a GPU. The measurements themselves need CUDA (make gpu-test)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from parnet_deploy.backends import StageTime

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_table3.py"
spec = importlib.util.spec_from_file_location("gpu_table3", SCRIPT)
table3 = importlib.util.module_from_spec(spec)
sys.modules["gpu_table3"] = table3  # dataclasses look their module up
spec.loader.exec_module(table3)


def _row(name, gpu_ms, arch="parnet_l", precision="fp32", stages=()):
    r = table3.Row(name, arch, precision, run=lambda: (0.0, 0.0), max_rel_err=1e-6)
    r.gpu_ms, r.wall_ms, r.stages = list(gpu_ms), [g + 0.05 for g in gpu_ms], list(stages)
    return r


def _calls(serial: bool):
    """stem 0-1 ms; three 2 ms streams, one after another or all at once; fusion after them."""
    calls = []
    for _ in range(3):
        starts = [1.0, 3.0, 5.0] if serial else [1.0, 1.0, 1.0]
        end = max(starts) + 2.0
        calls.append([StageTime("stem", 0.0, 1e-3)]
                     + [StageTime(f"stream{k}", s / 1e3, (s + 2.0) / 1e3) for k, s in enumerate(starts)]
                     + [StageTime("fusion", end / 1e3, (end + 0.5) / 1e3)])
    return calls


def test_overlap_tells_serial_streams_from_concurrent_ones():
    assert table3.overlap(_calls(serial=True))["overlap"] == pytest.approx(1.0)
    concurrent = table3.overlap(_calls(serial=False))
    assert concurrent["overlap"] == pytest.approx(3.0)
    assert concurrent["stages_ms"]["fusion"] == {"start": pytest.approx(3.0), "end": pytest.approx(3.5)}
    assert table3.overlap([]) is None


def test_targets_and_report():
    rows = [_row("torch unfused fp32", [10.0, 10.0, 10.2]), _row("torch deploy + graph fp32", [7.0, 7.1, 7.2]),
            _row("runtime whole + graph fp32", [7.5] * 3), _row("runtime 3 streams fp32", [8.0] * 3,
                                                                 stages=_calls(serial=True)),
            _row("runtime 3 streams + graph fp32", [7.0] * 3),
            _row("torch unfused fp32", [4.0] * 3, arch="parnet_s"), _row("torch deploy + graph fp32", [3.5] * 3,
                                                                          arch="parnet_s")]
    summary = table3.summarize(rows)
    assert summary[0]["gpu_ms"]["median"] == pytest.approx(10.0) and summary[0]["calls"] == 3
    assert summary[3]["streams"]["overlap"] == pytest.approx(1.0) and summary[0]["streams"] is None
    t = {(x["arch"], x["what"]): x for x in table3.targets(summary)}
    fused = t[("parnet_l", "deploy + graph vs unfused (fp32), speed-up")]
    assert fused["value"] == pytest.approx(10.0 / 7.1) and fused["met"] is True
    streams = t[("parnet_l", "3 streams + graph / whole + graph (fp32)")]
    assert streams["value"] == pytest.approx(7.0 / 7.5) and streams["met"] is False  # 0.933 > 0.9
    assert t[("parnet_s", "deploy + graph vs unfused (fp32), speed-up")]["met"] is None  # the target is ParNet-L's
    env = {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "driver": "580", "torch": "2.11",
           "cuda": "13.0", "tensorrt": None, "cpu": "x"}
    text = table3.markdown({"command": "python benchmarks/gpu_table3.py", "date": "d", "environment": env,
                            "rows": summary, "targets": table3.targets(summary)})
    assert "| parnet_l | torch deploy + graph fp32 | 7.100 |" in text and "TensorRT: not installed" in text
    assert "| 3 streams + graph / whole + graph (fp32) | 0.933 | <= 0.9 | **no** |" in text
    assert "| parnet_l | runtime 3 streams fp32 | stem 0.000-1.000, stream0 1.000-3.000" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_refuses_without_a_gpu(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--output", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "needs a CUDA device" in r.stderr and not list(tmp_path.iterdir())


def test_rows_that_disagree_are_refused_before_timing():
    import numpy as np

    from parnet_deploy.errors import VerificationError

    reference = np.array([[1.0, -2.0, 4.0]], np.float32)
    assert table3.checked_error("r", "fp32", reference * (1 + 5e-5), reference) == pytest.approx(5e-5, rel=1e-2)
    with pytest.raises(VerificationError, match="r disagrees with the unfused fp32 model"):
        table3.checked_error("r", "fp32", reference * (1 + 5e-4), reference)  # TF32-sized error on an fp32 row
    assert table3.checked_error("trt", "fp32", reference * (1 + 5e-4), reference, tensorrt=True) > 0
    with pytest.raises(VerificationError):
        table3.checked_error("h", "fp16", reference * 1.05, reference)
