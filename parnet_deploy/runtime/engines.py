"""Opening an engine directory: hashes, compatibility with this machine, then a runner."""

from __future__ import annotations

from pathlib import Path

from ..artifacts.engines_manifest import DeviceRecord, check_compatible, load_engines
from ..backends import backend_class
from ..errors import UserError
from .runner import ParnetRunner


def open_engines(directory: Path, backend: str | None = None, mode: str = "whole", threads: int | None = None,
                 timeout_s: float = 30.0, cuda_graph: bool = False, check_finite: bool = True) -> ParnetRunner:
    engines = load_engines(directory)
    built_with = engines.backend.name
    if backend is not None and backend != built_with:
        raise UserError(f"{directory}: engines were built for {built_with}, not {backend}")
    impl = backend_class(built_with)
    tags = sorted(set(engines.placement.values()))
    here: dict[str, DeviceRecord | None] = {
        t: impl.device("cpu" if engines.devices[t].kind == "cpu" else str(engines.devices[t].index)) for t in tags}
    check_compatible(engines, impl.version(), here, directory)
    devices = {t: "cpu" if engines.devices[t].kind == "cpu" else f"cuda:{engines.devices[t].index}" for t in tags}
    return ParnetRunner(engines.export_view(), directory, backend=built_with, mode=mode, threads=threads,
                        precision=engines.precision, placement=engines.placement, devices=devices,
                        timeout_s=timeout_s, cuda_graph=cuda_graph, check_finite=check_finite)
