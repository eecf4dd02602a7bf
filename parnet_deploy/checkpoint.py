"""Checkpoint I/O: official timm training checkpoints, plain state_dicts, our own format.

Loading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` with only
``argparse.Namespace`` (the ``args`` entry of timm checkpoints) allowed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .artifacts.files import as_new_file
from .errors import CheckpointError, ConfigError
from .models import ParNet, ParNetConfig, list_models, model_config
from .reparam import official_fuse, reparameterize

log = logging.getLogger("parnet_deploy")

FORMAT = "parnet-deploy"
FORMAT_VERSION = 1
FORMS = ("train", "official_fused", "deploy")
_SAFE_GLOBALS = [argparse.Namespace]


# -- reading -----------------------------------------------------------------------------
MAX_CHECKPOINT_BYTES = 16 << 30


def _check_zip_bounds(path: Path) -> None:
    """PyTorch checkpoints are zip files whose members are stored, not compressed: a member that
    would inflate far beyond the file (a zip bomb) is refused before anything is read."""
    if not zipfile.is_zipfile(path):
        return
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {e}") from e
    if total > min(MAX_CHECKPOINT_BYTES, 2 * size + (16 << 20)):
        raise CheckpointError(f"{path}: refused: its members inflate to {total} bytes from a {size}-byte file "
                              f"(a compressed bomb, not a checkpoint)")


def _read_torch(path: Path) -> Any:
    _check_zip_bounds(path)
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        culprit = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({culprit.group(1)})" if culprit else ""
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than tensors and "
            f"plain containers{what}; unpickling them could run code. Only tensors, numbers, "
            f"strings and argparse.Namespace are allowed") from e
    except Exception as e:  # torch.load raises many types on damaged input
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file: {e}") from e
    if meta.get("format") != FORMAT:
        return tensors  # a plain state_dict stored as safetensors
    try:
        return {"format": FORMAT, "format_version": int(meta.get("format_version", 0)),
                "config": json.loads(meta["config"]), "form": meta.get("form", "train"), "state_dict": tensors}
    except (KeyError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: bad parnet-deploy metadata (config missing or not JSON, or "
                              f"format_version not an integer): {str(e)[:120]}") from e


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


# -- inferring the architecture from tensor shapes -------------------------------------------
_CONV_KEYS = (".block.rbr_dense.conv.weight", ".block.reparam_conv.weight", ".block.rbr_reparam.weight")


def _rows(state: Mapping[str, torch.Tensor], key: str) -> int:
    if state[key].dim() == 0:
        raise CheckpointError(f"not a ParNet checkpoint: {key} is a scalar")
    return state[key].shape[0]


def _out_channels(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    for suffix in _CONV_KEYS + (".conv.weight",):
        if prefix + suffix in state:
            return _rows(state, prefix + suffix)
    raise CheckpointError(f"not a ParNet checkpoint: no weights under {prefix!r}")


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def _check_minimal_keys(state: Mapping[str, torch.Tensor], small: bool) -> None:
    """Every ParNet of this family and form holds the keys of the one with no stream blocks: name
    those the state_dict lacks (the inference below could only say where it stopped)."""
    minimal = ParNetConfig(planes=(2, 2, 2, 2), num_blocks=(1, 1, 1, 1), small_input=small)
    missing = [k for k in _meta_model(minimal, _form_of_keys(state)).state_dict() if k not in state]
    if missing:
        raise CheckpointError(f"not a ParNet checkpoint: missing {len(missing)} keys: {_few(missing)}")


def infer_config(state: Mapping[str, torch.Tensor], act: str) -> ParNetConfig:
    """Planes, blocks, classes and variant family from the tensor shapes of a state_dict."""
    if "head.fc.weight" not in state:
        raise CheckpointError("not a ParNet checkpoint: no 'head.fc.weight' (keys start with "
                              f"{', '.join(sorted(state)[:3])}, ...)")
    small = "combine.3.conv.weight" in state
    _check_minimal_keys(state, small)
    n_stem = _count(state, "inits.0.")
    planes = (_out_channels(state, f"inits.0.{n_stem - 1}"), _out_channels(state, "inits.1"),
              _out_channels(state, "inits.2"), _out_channels(state, "combine.3"))
    blocks = tuple(_count(state, f"streams.{k}.") + 1 for k in range(3)) + (1,)
    num_classes = _rows(state, "head.fc.weight")
    for name in list_models():
        ref = model_config(name)
        if (ref.planes, ref.num_blocks, ref.small_input) == (planes, blocks, small):
            return ref.with_overrides(num_classes=num_classes, act=act)
    return ParNetConfig(planes=planes, num_blocks=blocks, num_classes=num_classes, act=act, small_input=small)


def _form_of_keys(state: Mapping[str, torch.Tensor]) -> str:
    if any(".reparam_conv." in k for k in state):
        return "deploy"
    if any(".rbr_reparam." in k for k in state):
        return "official_fused"
    return "train"


def model_form(model: ParNet) -> str:
    return _form_of_keys(model.state_dict())


def _to_form(model: ParNet, form: str) -> ParNet:
    if form == "deploy":
        return reparameterize(model, inplace=True)
    if form == "official_fused":
        return official_fuse(model, inplace=True)
    return model


def _meta_model(config: ParNetConfig, form: str) -> ParNet:
    """The model ``config`` describes, in ``form``, on the meta device: every shape, no memory."""
    with torch.device("meta"):
        return _to_form(ParNet(config), form)


# what a file holds beyond its tensors' bytes is positive (headers, names, pickle), so this only
# absorbs rounding; 1 MiB of float32 weights is harmless however the file lies
SIZE_SLACK_BYTES = 1 << 20


def _check_size(model: ParNet, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """A file cannot hold more weight bytes than its size, but its tensors can claim any shape (a
    stride-0 view of one number pickles as one number), and so the config that matches them: the
    model's size, counted on the meta device, is bounded by the file's before anything is allocated."""
    own = model.state_dict()
    numel = sum(v.numel() for v in own.values())
    need = sum(state[k].numel() * state[k].element_size() for k in own)  # the keys and shapes match by now
    size = path.stat().st_size
    if need > size + SIZE_SLACK_BYTES:
        c = model.config
        raise CheckpointError(
            f"{path}: refused: its config (planes {list(c.planes)}, blocks {list(c.num_blocks)}, "
            f"{c.num_classes} classes) implies {numel:,} weights ({need:,} bytes), more than the "
            f"{size:,}-byte file can hold")


def _load_state(model: ParNet, state: dict[str, torch.Tensor], path: Path) -> ParNet:
    """Check ``state`` against the meta-device ``model`` (keys, shapes, then the bytes they claim against
    the file's size); only then allocate the model and fill it."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = ([f"missing keys: {_few(missing)}"] if missing else []) + (
            [f"unexpected keys: {_few(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"{path}: does not fit {model.config.arch}: " + "; ".join(parts))
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{path}: shape mismatch (checkpoint vs model): {_few(bad)}")
    _check_size(model, state, path)
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointError(f"{path}: non-finite weights (NaN or inf) in {_few(nonfinite)}; the model would "
                              f"output NaN")
    # strict loading fills every parameter and buffer (BN statistics included) of the uninitialised memory
    model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(path: str | os.PathLike, arch: str | None = None, act: str | None = None,
                    use_ema: bool = False) -> ParNet:
    """Load any supported checkpoint into a :class:`ParNet` (eval mode, config on ``model.config``).

    Formats: official timm training checkpoints (``state_dict`` / ``state_dict_ema``,
    ``module.`` prefixes, ``args`` Namespace), plain state_dicts (``.pt``/``.pth``/
    ``.safetensors``), and our own ``.pt`` / ``.safetensors`` which record the full config.
    Deploy-form and officially fused state_dicts load in that form (read off their keys).
    Official checkpoints carry no activation: ``relu`` is assumed unless ``act`` is given.
    """
    path = Path(path)
    if arch is not None:
        model_config(arch)  # an unknown name fails before any file is read
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    obj = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)

    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        try:
            config = ParNetConfig.from_dict(dict(obj["config"]))
        except (ConfigError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: bad recorded config: {e}") from e
        if act is not None and act != config.act:
            raise CheckpointError(f"{path}: records act={config.act!r}; refusing to run it with act={act!r}")
        if arch is not None and arch != config.arch:
            raise CheckpointError(f"{path}: records arch={config.arch!r}, not {arch!r}")
        state = dict(obj["state_dict"])
    else:
        if isinstance(obj, Mapping) and "state_dict" in obj:
            key = "state_dict_ema" if use_ema else "state_dict"
            if key not in obj:
                raise CheckpointError(f"{path}: has no {key!r} (keys: {', '.join(map(str, obj))})")
            state = obj[key]
        elif _is_state_dict(obj):
            if use_ema:
                raise CheckpointError(f"{path}: a plain state_dict has no EMA weights")
            state = obj
        else:
            raise CheckpointError(f"{path}: not a checkpoint: expected a state_dict or a dict with "
                                  f"'state_dict', got {type(obj).__name__}")
        if not _is_state_dict(state):
            raise CheckpointError(f"{path}: the state_dict holds non-tensor entries")
        state = _strip_prefix(state)
        if act is None:
            act = "relu"
            log.info("%s: activation not recorded (official checkpoints never do); using relu, "
                     "which the released code builds. Pass act='silu' to override.", path.name)
        try:
            config = infer_config(state, act) if arch is None else model_config(
                arch, act=act, num_classes=_rows(state, "head.fc.weight") if "head.fc.weight" in state else 1000)
        except (ConfigError, CheckpointError) as e:  # infer_config's own errors do not know the path
            raise CheckpointError(f"{path}: {e}") from e
    model = _load_state(_meta_model(config, _form_of_keys(state)), state, path)
    return model.eval()


# -- writing -------------------------------------------------------------------------------
def save_checkpoint(model: ParNet, path: str | os.PathLike) -> Path:
    """Write ``model`` in our format (``.safetensors`` or anything else as torch ``.pt``), atomically."""
    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    form = model_form(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, tmp, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION),
                                            "config": json.dumps(model.config.to_dict(), allow_nan=False),
                                            "form": form})
        else:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_dict(),
                        "form": form, "state_dict": state}, tmp)
        as_new_file(tmp)  # mkstemp makes 0600; a checkpoint should look like any other new file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_official_checkpoint(model: nn.Module, path: str | os.PathLike, epoch: int = 0) -> Path:
    """Write ``model`` the way the official timm training script does (for tests and tooling)."""
    state = {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    ema = {k: v.clone() for k, v in state.items()}
    args = argparse.Namespace(model=getattr(getattr(model, "config", None), "arch", "parnet"), epochs=epoch)
    torch.save({"epoch": epoch, "arch": args.model, "state_dict": state, "state_dict_ema": ema, "args": args}, path)
    return Path(path)
