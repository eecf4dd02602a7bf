import numpy as np
import pytest
import torch
from torch import nn

import parnet_deploy as pd

# Small widths keep the suite fast; the structure (blocks, strides, groups, fusions) is the real one.
TINY = dict(planes=(16, 32, 64, 96))
TINY_SMALL_INPUT = dict(planes=(8, 16, 32, 32))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters (a fresh BN is an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.randn(c, generator=g) * 0.5 + 1.0)
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
    return model


def threaded_mismatches(call, expected: dict, calls: int) -> list:
    """One thread per key of ``expected`` calls ``call(key)`` ``calls`` times; the keys whose result
    was ever not bitwise equal to ``expected[key]``."""
    import threading

    mismatches = []

    def work(key):
        for _ in range(calls):
            if not np.array_equal(call(key), expected[key]):
                mismatches.append(key)

    threads = [threading.Thread(target=work, args=(k,)) for k in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return mismatches


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY))


def skip_reason(marks: dict[str, tuple], cuda_devices: int, tensorrt_error: str | None) -> str | None:
    """Why a test with these markers cannot run here (None: it can).

    ``gpu``: one NVIDIA GPU; ``gpus(n)``: at least n; ``tensorrt``: TensorRT importable (and a GPU).
    """
    needed = max([1 if "gpu" in marks or "tensorrt" in marks else 0, *marks.get("gpus", ())])
    if needed and cuda_devices < needed:
        have = "no CUDA device" if cuda_devices == 0 else f"{cuda_devices} CUDA device(s)"
        return f"needs {needed} NVIDIA GPU(s); {have} here (torch.cuda.device_count() == {cuda_devices})"
    if "tensorrt" in marks and tensorrt_error is not None:
        return f"needs TensorRT: import tensorrt failed ({tensorrt_error})"
    return None


def _cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install counts as none
        return 0


def _tensorrt_error() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # ImportError, or a library that fails to load
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    return None


def pytest_collection_modifyitems(config, items):
    marked = [(item, {m.name: m.args for m in item.iter_markers() if m.name in ("gpu", "gpus", "tensorrt")})
              for item in items]
    if not any(marks for _, marks in marked):
        return
    devices = _cuda_devices()
    trt_error = _tensorrt_error() if any("tensorrt" in marks for _, marks in marked) else None
    for item, marks in marked:
        reason = skip_reason(marks, devices, trt_error) if marks else None
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


# -- a tiny model's exports (replicated and shared split): test_engines, test_distributed, test_placement
# and test_distributed_plan. Session-scoped: exported once for all of them.
ENGINE_RES = (64, 64)


def engine_model() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(pd.create_model("parnet_s", num_classes=10, **TINY), seed=11)


def engine_input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, *ENGINE_RES)).astype(np.float32)


@pytest.fixture(scope="session")
def engine_exports(tmp_path_factory):
    """(root, {"replicated": export dir, "shared": export dir})."""
    from parnet_deploy.export import ExportConfig, export_model

    root = tmp_path_factory.mktemp("eng")
    model = engine_model()
    return root, {split: export_model(model, ExportConfig(output=root / "export", name=split, resolution=ENGINE_RES,
                                                          split=split, verify=False), log=lambda _: None)[0]
                  for split in ("replicated", "shared")}
