"""ParNet's architecture config and the named variants' configs: no PyTorch here.

The registry (``_registry.py``) and everything that only reads configs (manifests, the
runtime) import this module without importing the model code.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import ConfigError
from ._registry import register_model

ACTIVATIONS = ("relu", "silu")
# bounds that keep a hostile or mistyped config from allocating terabytes (ParNet-XL's widest is 3200)
MAX_WIDTH = 8192
MAX_BLOCKS = 64
MAX_CLASSES = 100_000
MAX_SIDE = 4096  # input height and width


@dataclass(frozen=True)
class ParNetConfig:
    """Everything that defines a ParNet's architecture (recorded in checkpoints and exports).

    planes: widths of the three streams and of the last block, e.g. ``(92, 192, 384, 1280)``.
    num_blocks: stream k holds ``num_blocks[k] - 1`` blocks; ``num_blocks[3]`` must be 1.
    num_classes: classifier outputs.
    act: ``relu`` (what the released code builds) or ``silu`` (what the paper describes).
    dropout: before the classifier; a no-op at inference.
    small_input: the reconstructed 32x32 (CIFAR) variant: stride-1 stem of three blocks and
        a 1x1 conv instead of the last downsampling block (paper section 3.3).
    arch: the registered name this config came from, or ``custom``.
    """

    planes: tuple[int, int, int, int]
    num_blocks: tuple[int, int, int, int] = (5, 6, 6, 1)
    num_classes: int = 1000
    act: str = "relu"
    dropout: float = 0.0
    small_input: bool = False
    arch: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "planes", _ints("planes", self.planes))
        object.__setattr__(self, "num_blocks", _ints("num_blocks", self.num_blocks))
        object.__setattr__(self, "num_classes", _int("num_classes", self.num_classes))
        object.__setattr__(self, "dropout", _float("dropout", self.dropout))
        if len(self.planes) != 4 or any(not 0 < p <= MAX_WIDTH for p in self.planes):
            raise ConfigError(f"planes must be 4 ints in 1..{MAX_WIDTH}, got {_show(self.planes)}")
        if any(p % 2 for p in self.planes[1:3]):
            raise ConfigError(f"planes[1] and planes[2] must be even (groups-2 fusion), got {self.planes}")
        blocks = self.num_blocks
        if len(blocks) != 4 or any(not 1 <= b <= MAX_BLOCKS for b in blocks) or blocks[3] != 1:
            raise ConfigError(f"num_blocks must be 4 ints in 1..{MAX_BLOCKS} with num_blocks[3] == 1, "
                              f"got {_show(self.num_blocks)}")
        if not isinstance(self.act, str) or self.act not in ACTIVATIONS:
            raise ConfigError(f"act must be one of {ACTIVATIONS}, got {_show(self.act)}")
        if not 1 <= self.num_classes <= MAX_CLASSES:
            raise ConfigError(f"num_classes must be in 1..{MAX_CLASSES}, got {_show(self.num_classes)}")
        if not (math.isfinite(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be a finite number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.small_input, bool):
            raise ConfigError(f"small_input must be true or false, got {_show(self.small_input)}")
        if not isinstance(self.arch, str):
            raise ConfigError(f"arch must be a string, got {_show(self.arch)}")

    @property
    def input_multiple(self) -> int:
        """Input sides must be multiples of this (every stride-2 stage needs an even input)."""
        return 4 if self.small_input else 32

    @property
    def default_resolution(self) -> int:
        return 32 if self.small_input else 224

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["planes"], d["num_blocks"] = list(self.planes), list(self.num_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParNetConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config fields: {sorted(unknown)}")
        return cls(**d)

    def with_overrides(self, **overrides: Any) -> ParNetConfig:
        """A copy with the non-None ``overrides``; a changed architecture is named ``custom``."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        new = replace(self, **changes)
        shape_fields = ("planes", "num_blocks", "small_input")
        if "arch" not in changes and any(getattr(new, f) != getattr(self, f) for f in shape_fields):
            new = replace(new, arch="custom")
        return new


def _is_int(value: Any) -> bool:
    # bool is an int to Python, and int() would truncate a float silently: both are refused
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int(name: str, value: Any) -> int:
    if not _is_int(value):
        raise ConfigError(f"{name} must be an integer, got {_show(value)}")
    return int(value)


def _ints(name: str, values: Any) -> tuple[int, ...]:
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise ConfigError(f"{name} must be a list of 4 integers, got {_show(values)}")
    values = tuple(values)
    if not all(_is_int(v) for v in values):
        raise ConfigError(f"{name} must be a list of 4 integers, got {_show(list(values))}")
    return tuple(int(v) for v in values)


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {_show(value)}")
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf


def _show(value: Any) -> str:
    """A value for a one-line message: a hostile config may hold a megabyte in one field."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits
        text = f"<a {type(value).__name__} too long to print>"
    return text if len(text) <= 80 else text[:77] + "..."


# -- named variants -------------------------------------------------------------------------
# Official ImageNet configs (released YAMLs; ParNet-S uses 92, not the paper's 96).
@register_model
def parnet_s(**overrides: Any) -> ParNetConfig:
    return ParNetConfig(planes=(92, 192, 384, 1280), arch="parnet_s").with_overrides(**overrides)


@register_model
def parnet_m(**overrides: Any) -> ParNetConfig:
    return ParNetConfig(planes=(128, 256, 512, 2048), arch="parnet_m").with_overrides(**overrides)


@register_model
def parnet_l(**overrides: Any) -> ParNetConfig:
    return ParNetConfig(planes=(160, 320, 640, 2560), dropout=0.1, arch="parnet_l").with_overrides(**overrides)


@register_model
def parnet_xl(**overrides: Any) -> ParNetConfig:
    return ParNetConfig(planes=(200, 400, 800, 3200), dropout=0.1, arch="parnet_xl").with_overrides(**overrides)


# Small-input (32x32, CIFAR) variants: a reconstruction of the paper's section 3.3 — no
# official code exists. Stride-1 stem (blocks at depths 1-2 become RepVGG-SSE-like and one
# block is added at depth 3), streams one block shorter, a narrow 1x1 conv replaces the last
# downsampling block. Widths chosen to land within 5% of the paper's 1.3M / 15.5M / 35M.
SMALL_WIDTHS = {"s": (32, 64, 128, 128), "m": (112, 224, 448, 448), "l": (168, 336, 672, 672)}
_SMALL = dict(num_blocks=(4, 5, 5, 1), num_classes=10, small_input=True)


@register_model
def parnet_cifar_s(**overrides: Any) -> ParNetConfig:
    return ParNetConfig(planes=(SMALL_WIDTHS["s"]), arch="parnet_cifar_s", **_SMALL).with_overrides(**overrides)


@register_model
def parnet_cifar_m(**overrides: Any) -> ParNetConfig:
    return ParNetConfig(planes=(SMALL_WIDTHS["m"]), arch="parnet_cifar_m", **_SMALL).with_overrides(**overrides)


@register_model
def parnet_cifar_l(**overrides: Any) -> ParNetConfig:
    return ParNetConfig(planes=(SMALL_WIDTHS["l"]), arch="parnet_cifar_l", **_SMALL).with_overrides(**overrides)

