"""``export_model``: deploy form → a verified, hash-listed export directory, written atomically."""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from ..artifacts.export_manifest import IMAGENET_NORMALIZATION, ExportManifest, SubgraphSpec, TensorSpec
from ..artifacts.files import as_new_file, atomic_directory, hash_files
from ..artifacts.schema import MAX_BATCH, NAME, BatchDim
from ..errors import ConfigError, ExportError, ToolchainError, VerificationError
from ..models import ParNet
from ..models.config import MAX_SIDE
from ..models.cuts import SPLITS
from ..reparam import reparameterize
from ..version import __version__
from . import graph as G
from .opgate import check_tensorrt_ops
from .verify import VerificationResult, verify_export

PRECISIONS = ("fp32", "fp16")  # what parnet-export writes; int8 exports come from parnet-quantize


TORCH_WEIGHTS = "deploy.safetensors"


@dataclass(frozen=True)
class ExportConfig:
    """What ``parnet-export`` writes and how.

    output: parent folder (``export``); name: sub-folder (default: the arch);
    resolution: ``(H, W)`` (default: the variant's native size); opset: ONNX opset (18-20,
    TensorRT 10 parses up to 20); split: ``replicated`` | ``shared``; precision: ``fp32`` |
    ``fp16``; force: replace an existing export; verify: run the built-in checks.
    """

    output: Path = Path("export")
    name: str | None = None
    resolution: tuple[int, int] | None = None
    opset: int = 18
    split: str = "replicated"
    precision: str = "fp32"
    force: bool = False
    verify: bool = True
    seed: int = 0
    torch_weights: bool = True  # write deploy.safetensors (the torch backend runs the export from it)
    batch: tuple[int, int] = (1, 1)  # (min, max): equal, a static batch; else a bounded dynamic batch axis

    def validate(self) -> None:
        check_batch_bounds(self.batch)
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose one of {', '.join(SPLITS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.opset not in G.OPSETS:
            raise ConfigError(f"opset {self.opset} not supported; choose one of {', '.join(map(str, G.OPSETS))}")
        check_export_name(self.name)


def check_export_name(name: str | None) -> None:
    """``--name``: it becomes the export's folder, so the strict name pattern (None: the default name)."""
    if name is not None and not (NAME.fullmatch(name) and ".." not in name):
        raise ConfigError(f"bad export name {name!r}: use letters, digits, '.', '_', '-' (at most 64, "
                          f"starting with a letter or digit)")


def check_batch_bounds(batch: tuple[int, int]) -> None:
    """``--batch``: ``(min, max)`` with ``1 <= min <= max <= MAX_BATCH``."""
    if (not isinstance(batch, tuple) or len(batch) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in batch)
            or not 1 <= batch[0] <= batch[1] <= MAX_BATCH):
        raise ConfigError(f"bad batch {batch!r}: expected N or MIN..MAX with 1 <= MIN <= MAX <= {MAX_BATCH}")


def _tensor_specs(values, batch: tuple[int, int]) -> tuple[TensorSpec, ...]:
    """The graph's value infos as specs; a symbolic dim 0 is the bounded batch ``batch``."""
    out = []
    for v in values:
        tt = v.type.tensor_type
        dims: list[int | BatchDim] = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            elif i == 0 and batch[0] < batch[1]:
                dims.append(BatchDim(*batch))
            else:
                raise ExportError(f"tensor {v.name!r}: dim {i} is not static ({d.dim_param or '?'}); only dim 0 of "
                                  "a dynamic-batch export may be")
        out.append(TensorSpec(v.name, tuple(dims), str(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))))
    return tuple(out)


def spec_of(model: onnx.ModelProto, name: str, file: str, stream: int | None = None,
            batch: tuple[int, int] = (1, 1)) -> SubgraphSpec:
    return SubgraphSpec(name, file, _tensor_specs(model.graph.input, batch),
                        _tensor_specs(model.graph.output, batch), stream)


class Steps:
    """Progress lines with timings: ``[2/7] reparameterize ... 0.41 s``."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.n, self.log = total, 0, log

    @contextlib.contextmanager
    def __call__(self, title: str):
        self.n += 1
        t0 = time.perf_counter()
        yield
        self.log(f"[{self.n}/{self.total}] {title} ... {time.perf_counter() - t0:.2f} s")


def export_model(model: ParNet, config: ExportConfig = ExportConfig(),
                 log: Callable[[str], None] = print) -> tuple[Path, ExportManifest]:
    """Export a train-form (or deploy-form) model; returns the directory and its manifest.

    Raises :class:`VerificationError` (nothing is written) when a check fails.
    """
    config.validate()
    cfg = model.config
    resolution = config.resolution or (cfg.default_resolution, cfg.default_resolution)
    try:
        if not all(0 < side <= MAX_SIDE for side in resolution):
            raise ConfigError(f"sides must be in 1..{MAX_SIDE}")
        model.check_input(torch.empty(1, 3, *resolution, device="meta"))  # shape only: allocates nothing
    except ConfigError as e:
        raise ConfigError(f"bad resolution {resolution[0]}x{resolution[1]}: {e}") from e
    name = config.name or cfg.arch
    target = config.output / name
    step = Steps(7 if config.verify else 6, log)

    with atomic_directory(target, force=config.force, marker="manifest.json") as tmp:
        with step("reparameterize (exact, deploy form)"):
            train = model.eval()
            deploy = reparameterize(model)
        lo, hi = config.batch
        batch_text = f"batch {lo}" if lo == hi else f"batch {lo}..{hi}"
        with step(f"export ONNX (opset {config.opset}, {resolution[0]}x{resolution[1]}, {batch_text})"):
            whole32 = G.torch_to_onnx(deploy, resolution, config.opset, config.batch)
            whole = G.to_fp16(whole32) if config.precision == "fp16" else whole32
        with step(f"cut {config.split} subgraphs (onnx-graphsurgeon)"):
            plan = G.subgraph_plan(deploy, config.split)
            parts = {sub: G.cut(whole, ins, outs, sub) for sub, ins, outs, _ in plan}
        with step("onnx.checker (full) and TensorRT op gate"):
            for label, proto in [("model", whole), *parts.items()]:
                try:
                    onnx.checker.check_model(proto, full_check=True)
                except onnx.checker.ValidationError as e:
                    raise ToolchainError(f"{label}.onnx fails onnx.checker: {str(e).splitlines()[0]}") from e
                check_tensorrt_ops(proto, f"{label}.onnx")
        with step("write files and reference input/output"):
            onnx.save(whole, tmp / "model.onnx")
            for sub, proto in parts.items():
                onnx.save(proto, tmp / f"{sub}.onnx")
            x = np.random.default_rng(config.seed).standard_normal((lo, 3, *resolution)).astype(np.float32)
            with torch.no_grad():
                logits = deploy(torch.from_numpy(x)).numpy()
            np.savez(tmp / "reference.npz", image=x, logits=logits)
            if config.torch_weights:
                from safetensors.torch import save_file

                save_file({k: v.contiguous() for k, v in deploy.state_dict().items()}, str(tmp / TORCH_WEIGHTS))
                as_new_file(tmp / TORCH_WEIGHTS)
        manifest = ExportManifest(
            name=name, model=cfg, precision=config.precision,
            split=config.split, opset=config.opset, whole=spec_of(whole, "model", "model.onnx", batch=config.batch),
            subgraphs=tuple(spec_of(parts[sub], sub, f"{sub}.onnx", k, config.batch) for sub, _, _, k in plan),
            files=hash_files(tmp), normalizations=(IMAGENET_NORMALIZATION,),
            versions=tool_versions(), verification={"performed": False},
            torch_weights=TORCH_WEIGHTS if config.torch_weights else None,
        )
        if config.verify:
            with step("verify with ONNX Runtime"):
                result = verify_export(manifest, tmp, train, deploy, whole32, seed=config.seed)
            log(result.report())
            if not result.passed:
                raise VerificationError(f"verification FAILED; nothing was written to {target}")
            manifest = replace(manifest, verification={"performed": True, **_summary(result)})
        with step("write manifest.json"):
            manifest.write(tmp)
    log(f"export written to {target}/ ({', '.join(sorted(manifest.files))}, manifest.json)")
    return target, manifest


def _summary(result: VerificationResult) -> dict:
    worst = max((o.max_rel for c in result.comparisons for o in c.outputs), default=0.0)
    return {"passed": result.passed, "comparisons": len(result.comparisons), "worst_max_rel": worst}


def tool_versions() -> dict[str, str]:
    import onnxruntime

    return {"parnet_deploy": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
