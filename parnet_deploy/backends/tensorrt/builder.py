"""TensorRT builder (TensorRT 10 and 11 Python API). Needs a GPU: not runnable on CPU-only machines.

Networks are strongly typed on 10.x and 11.x alike (documented since 10.0; weak typing is
deprecated since 10.12 and gone in 11): precision comes from the ONNX (fp16 casts, Q/DQ
nodes), so the engine computes what the accuracy gate accepted. Timing caches are kept one
per GPU model, compute capability, TensorRT version and batch profile, in the ``timing_cache``
folder.

A dynamic-batch export (dim 0 of every tensor bounded, ``BuildOptions.profile`` = (min, opt, max))
gets one optimization profile: every network input whose dim 0 is dynamic (-1) is set to
``(min, ...)``, ``(opt, ...)``, ``(max, ...)``; TensorRT tunes its kernels for ``opt`` and the
engine accepts any batch in ``min..max`` (the runner sets each call's shape).
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


def timing_cache_path(folder: str, device: DeviceRecord, trt_version: str,
                      profile: tuple[int, int, int] | None = None) -> Path:
    """One cache per GPU model, compute capability, TensorRT version and batch profile: a cache from
    another GPU or release would be refused (``ignore_mismatch=False``), so they never share a file;
    a dynamic-batch build's tactics were timed for its profile, so it keeps a file of its own
    (``-b{min}-{opt}-{max}``)."""
    sm = (device.compute_capability or "unknown").replace(".", "")
    batch = "" if profile is None else "-b" + "-".join(map(str, profile))
    return Path(folder) / f"{slug(device.name)}-sm{sm}-trt{slug(trt_version)}{batch}.cache"


def add_profile(builder, network, config, profile: tuple[int, int, int] | None) -> None:
    """The optimization profile of a dynamic-batch build: every input with a dynamic dim 0 gets
    ``(min, opt, max)`` there and its static dims elsewhere. A static build needs none (TensorRT
    makes the default); a dynamic ONNX without a profile, a profile for a static ONNX, or a dynamic
    dim other than dim 0 are refused with the input named."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dims = {t.name: tuple(int(d) for d in t.shape) for t in inputs}
    dynamic = [name for name, shape in dims.items() if shape and shape[0] < 0]
    for name, shape in dims.items():
        if any(d < 0 for d in shape[1:]):
            raise UserError(f"TensorRT: input {name!r} has dynamic dims {list(shape)}; only dim 0 (the batch) "
                            f"may be dynamic")
    if profile is None:
        if dynamic:
            raise UserError(f"TensorRT: inputs {dynamic} have a dynamic batch, but the build has no batch profile "
                            f"(the export's manifest declares static shapes)")
        return
    if not dynamic:
        raise UserError(f"TensorRT: a batch profile {profile} was asked for, but no input of the ONNX has a "
                        f"dynamic dim 0")
    opt = builder.create_optimization_profile()
    for name in dynamic:
        rest = dims[name][1:]
        opt.set_shape(name, (profile[0], *rest), (profile[1], *rest), (profile[2], *rest))
    if config.add_optimization_profile(opt) < 0:
        raise UserError(f"TensorRT refused the batch profile min/opt/max {profile} for inputs {dynamic}")


def _current_device(index: int):  # pragma: no cover - needs a GPU (the tests' fake replaces it)
    import torch

    return torch.cuda.device(index)


def build(onnx_path: Path, engine_path: Path, device: DeviceRecord, options: BuildOptions) -> None:
    """Parse ``onnx_path`` and serialize an engine for ``device`` (made current)."""
    trt = _trt()
    with _current_device(device.index or 0):
        log = logger()
        builder = trt.Builder(log)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, log)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ToolchainError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
        add_profile(builder, network, config, options.profile)
        cache_path = (timing_cache_path(options.timing_cache, device, trt.__version__, options.profile)
                      if options.timing_cache else None)
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
