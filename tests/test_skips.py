"""The reasons GPU tests give when they cannot run (tests/conftest.py)."""

import pytest
from conftest import skip_reason


@pytest.mark.parametrize("marks, devices, trt_error, expected", [
    ({}, 0, None, None),
    ({"gpu": ()}, 0, None, "needs 1 NVIDIA GPU(s); no CUDA device here"),
    ({"gpu": ()}, 1, None, None),
    ({"gpu": (), "gpus": (3,)}, 1, None, "needs 3 NVIDIA GPU(s); 1 CUDA device(s) here"),
    ({"gpus": (2,)}, 2, None, None),
    ({"tensorrt": ()}, 0, "ModuleNotFoundError: No module named 'tensorrt'", "needs 1 NVIDIA GPU(s)"),
    ({"tensorrt": ()}, 1, "ModuleNotFoundError: No module named 'tensorrt'", "needs TensorRT: import tensorrt failed"),
    ({"tensorrt": ()}, 1, None, None),
    ({"tensorrt": (), "gpus": (3,)}, 2, None, "needs 3 NVIDIA GPU(s)"),
])
def test_skip_reasons(marks, devices, trt_error, expected):
    reason = skip_reason(marks, devices, trt_error)
    assert (reason is None) if expected is None else (reason is not None and reason.startswith(expected)), reason
