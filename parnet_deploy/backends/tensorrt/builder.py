"""TensorRT builder (TensorRT 10 and 11 Python API). Needs a GPU: not runnable on CPU-only machines.

Networks are strongly typed on 10.x and 11.x alike (documented since 10.0; weak typing is
deprecated since 10.12 and gone in 11): precision comes from the ONNX (fp16 casts, Q/DQ
nodes), so the engine computes what the accuracy gate accepted. Timing caches are kept one
per GPU model, compute capability and TensorRT version, in the ``timing_cache`` folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ...artifacts.engines_manifest import BuildOptions, DeviceRecord
from ...errors import ToolchainError, UserError
from ...hardware import slug
from . import INFO


def _trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise INFO.missing() from e
    return trt


def version() -> str:
    return _trt().__version__


_LOGGER = None


def logger():
    """The process's one TensorRT logger (TensorRT keeps the first logger it is given): warnings
    and errors go to stderr, and errors are also kept, so a step TensorRT only logs as failed
    (e.g. reading a corrupt timing cache) can be refused."""
    global _LOGGER
    if _LOGGER is None:
        trt = _trt()

        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, msg):
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                    self.errors.append(msg)
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR, trt.ILogger.WARNING):
                    print(f"TensorRT: {msg}", file=sys.stderr)

        _LOGGER = Logger()
    return _LOGGER


def timing_cache_path(folder: str, device: DeviceRecord, trt_version: str) -> Path:
    """One cache per GPU model, compute capability and TensorRT version: a cache from another
    GPU or release would be refused (``ignore_mismatch=False``), so they never share a file."""
    sm = (device.compute_capability or "unknown").replace(".", "")
    return Path(folder) / f"{slug(device.name)}-sm{sm}-trt{slug(trt_version)}.cache"


def build(onnx_path: Path, engine_path: Path, device: DeviceRecord, options: BuildOptions) -> None:
    """Parse ``onnx_path`` and serialize an engine for ``device`` (made current)."""
    import torch

    trt = _trt()
    with torch.cuda.device(device.index or 0):
        log = logger()
        builder = trt.Builder(log)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, log)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ToolchainError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
        cache_path = timing_cache_path(options.timing_cache, device, trt.__version__) if options.timing_cache else None
        logged = len(log.errors)
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
        if cache is None or len(log.errors) > logged or not config.set_timing_cache(cache, ignore_mismatch=False):
            raise UserError(f"TensorRT refused the timing cache {cache_path}; delete it to start a new one")
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ToolchainError(f"TensorRT failed to build {onnx_path.name} (see the log above)")
        engine_path.write_bytes(bytes(plan))
        if cache_path is not None:
            updated = config.get_timing_cache()
            if updated is not None:
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                partial = cache_path.with_name(cache_path.name + f".{os.getpid()}.tmp")
                partial.write_bytes(bytes(updated.serialize()))
                partial.replace(cache_path)  # another build reading it never sees half a cache
