"""Device discovery and tags (``cpu``, ``cuda0-nvidia-h100-sm90``)."""

from __future__ import annotations

import re

from ..bench.environment import cpu_model
from ..errors import BackendMissingError, UserError
from .manifest import DeviceRecord


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def cpu_device() -> DeviceRecord:
    return DeviceRecord(tag="cpu", kind="cpu", name=cpu_model())


def cuda_device(index: int) -> DeviceRecord:  # pragma: no cover - needs a GPU
    try:
        import torch
    except ImportError as e:
        raise BackendMissingError("torch.cuda", "pip install torch (a CUDA build)") from e
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise UserError(f"no CUDA device {index} (found {torch.cuda.device_count() if torch.cuda.is_available() else 0})")
    props = torch.cuda.get_device_properties(index)
    cc = f"{props.major}.{props.minor}"
    uuid = str(getattr(props, "uuid", "")) or None
    return DeviceRecord(tag=f"cuda{index}-{_slug(props.name)}-sm{props.major}{props.minor}", kind="cuda",
                        name=props.name, index=index, compute_capability=cc, uuid=uuid)


def parse_devices(text: str | None, backend: str) -> list[str]:
    """``--devices``: ``cpu`` or a comma list of CUDA indices (``0,1,2``)."""
    if text is None:
        return ["cpu"] if backend == "onnxruntime" else ["0"]
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items or not all(t == "cpu" or t.isdigit() for t in items) or len(set(items)) != len(items):
        raise UserError(f"--devices: expected 'cpu' or distinct GPU indices like 0,1,2, got {text!r}")
    if backend == "tensorrt" and "cpu" in items:
        raise UserError("--devices: TensorRT builds for GPUs only")
    return items


def discover(items: list[str]) -> list[DeviceRecord]:
    return [cpu_device() if t == "cpu" else cuda_device(int(t)) for t in items]


def running_devices(tags: list[str], records: dict[str, DeviceRecord]) -> dict[str, DeviceRecord | None]:
    """What each recorded device tag is on this machine now (None when absent)."""
    out: dict[str, DeviceRecord | None] = {}
    for tag in tags:
        rec = records[tag]
        if rec.kind == "cpu":
            out[tag] = cpu_device()
        else:
            try:
                out[tag] = cuda_device(rec.index or 0)
            except UserError:
                out[tag] = None
    return out
