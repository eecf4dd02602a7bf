"""Opening an engine directory: hashes, compatibility with this machine, then a runner."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import UserError
from ..runtime.api import ParnetRunner
from . import devices as dev
from .manifest import check_compatible, load_engines


def open_engines(directory: Path, backend: str | None = None, mode: str = "whole", threads: int | None = None,
                 timeout_s: float = 30.0) -> ParnetRunner:
    engines = load_engines(directory)
    built_with = engines.backend["name"]
    if backend is not None and backend != built_with:
        raise UserError(f"{directory}: engines were built for {built_with}, not {backend}")
    impl = importlib.import_module(f".builders.{built_with}", __package__)
    tags = sorted(set(engines.placement.values()))
    check_compatible(engines, impl.version(), dev.running_devices(tags, engines.devices), directory)
    devices = {t: "cpu" if engines.devices[t].kind == "cpu" else f"cuda:{engines.devices[t].index}" for t in tags}
    return ParnetRunner(engines.export_view(), directory, backend=built_with, mode=mode, threads=threads,
                        placement=engines.placement, devices=devices, timeout_s=timeout_s)
