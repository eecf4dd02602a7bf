"""TensorRT builder (TensorRT 10 and 11 Python API). Needs a GPU: not runnable on CPU-only machines.

TensorRT 11 builds strongly typed networks only: precision comes from the ONNX (fp16
casts, Q/DQ nodes). TensorRT 10 is given the builder flags that match the ONNX's precision
instead. A timing cache is read before and written after each build.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import BackendMissingError, ParnetError

INSTALL_HINT = "pip install 'parnet-deploy[gpu]' (tensorrt>=10; needs an NVIDIA driver)"


def _trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendMissingError("tensorrt", INSTALL_HINT) from e
    return trt


def version() -> str:
    return _trt().__version__


def major_version() -> int:
    return int(version().split(".")[0])


def build(onnx_path: Path, engine_path: Path, device_index: int | None, options: dict) -> None:
    """Parse ``onnx_path`` and serialize an engine for the GPU ``device_index`` (made current)."""
    import torch

    trt = _trt()
    with torch.cuda.device(device_index or 0):
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        strongly_typed = major_version() >= 11 or options.get("strongly_typed", False)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ParnetError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.get("workspace_mib", 2048)) << 20)
        if not strongly_typed:
            precision = options.get("precision", "fp32")
            if precision in ("fp16", "int8"):
                config.set_flag(trt.BuilderFlag.FP16)
            if precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from Q/DQ
        cache_path = options.get("timing_cache")
        cache = config.create_timing_cache(Path(cache_path).read_bytes() if cache_path and Path(cache_path).is_file()
                                           else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ParnetError(f"TensorRT failed to build {onnx_path.name} (see the log above)")
        engine_path.write_bytes(bytes(plan))
        if cache_path:
            Path(cache_path).write_bytes(bytes(config.get_timing_cache().serialize()))
