"""ParNet — "Non-deep Networks" (Goyal, Bochkovskiy, Deng, Koltun, 2021).

Module names equal the official checkpoint keys (imankgoyal/NonDeepNetworks), so an
official ``state_dict`` loads with ``strict=True``. Read top to bottom: blocks, then the
model; the config and the named variants are in ``config.py`` (no PyTorch).

Every re-parameterizable module has ``reparameterize()`` (idempotent, in place);
:func:`parnet_deploy.reparameterize` walks a model and calls them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from . import _fold
from .config import ACTIVATIONS, ParNetConfig
from .cuts import IMAGE, LOGITS, SPLITS, Cut

__all__ = ["ACTIVATIONS", "ParNet", "ParNetConfig"]


def make_act(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.SiLU()


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ConvBN(nn.Sequential):
    """conv (no bias) → BN, keys ``conv`` / ``bn`` as in the official ``conv_bn``."""

    def __init__(self, ci: int, co: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(ci, co, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(co)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _fold.fold_bn_into_conv(self.conv.weight, self.bn)


class ConvSigmoid(nn.Module):
    def __init__(self, ci: int, co: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(ci, co, 1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


class SkipSqueezeExcite(nn.Module):
    """Global average pool → 1x1 conv → sigmoid: the per-channel gate (keys ``se.cvsig.conv``)."""

    def __init__(self, ci: int, co: int, groups: int):
        super().__init__()
        self.cvsig = ConvSigmoid(ci, co, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cvsig(x.mean((2, 3), keepdim=True))


class RepVGGBlock(nn.Module):
    """The one ParNet block (official name ``RepVGGBlock``).

    Train form, with identity (RepVGG-SSE): ``act(dense(x) + 1x1(x) + B(x)·σ(W·GAP(B(x))))``;
    without (Downsampling / Fusion): ``act((dense(x) + 1x1(x)) · 2σ(W·GAP(x)))``.

    Deploy form (after :meth:`reparameterize`): one 3x3 conv with bias holds dense + 1x1
    (+ the factor 2 of the gate). The SE reads ``GAP(x)`` and applies the identity BN to the
    pooled vector (``GAP(B(x)) == B(GAP(x))``), so it no longer waits for ``B(x)``; the ONNX
    exporter then folds that pooled-side BN into the SE conv (weight·s, bias W·t). Keeping
    it as a shared module here means no parameter is stored twice.
    """

    def __init__(self, ci: int, co: int, stride: int = 1, groups: int = 1, act: str = "relu"):
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"stride must be 1 or 2, got {stride}")
        self.ci, self.co, self.stride, self.groups = ci, co, stride, groups
        self.rbr_dense: ConvBN | None = ConvBN(ci, co, 3, stride, groups)
        self.rbr_1x1: nn.Module | None = (
            nn.Sequential(nn.AvgPool2d(2, 2), ConvBN(ci, co, 1, 1, groups)) if stride == 2
            else ConvBN(ci, co, 1, 1, groups)
        )
        self.rbr_identity = nn.BatchNorm2d(ci) if ci == co and stride == 1 else None
        self.se = SkipSqueezeExcite(ci, co, groups)
        self.act = make_act(act)
        self.rbr_reparam: nn.Conv2d | None = None  # the official fuse (baseline only)
        self.reparam_conv: nn.Conv2d | None = None  # our deploy form

    @property
    def has_identity(self) -> bool:
        return self.rbr_identity is not None

    @property
    def is_deployed(self) -> bool:
        return self.reparam_conv is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            pooled = x.mean((2, 3), keepdim=True)
            if self.rbr_identity is None:
                return self.act(self.reparam_conv(x) * self.se.cvsig(pooled))
            gate = self.se.cvsig(self.rbr_identity(pooled))  # GAP(B(x)) == B(GAP(x))
            return self.act(self.reparam_conv(x) + self.rbr_identity(x) * gate)
        if self.rbr_reparam is not None:
            dense = self.rbr_reparam(x)
        else:
            dense = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            b = self.rbr_identity(x)
            return self.act(dense + b * self.se(b))
        return self.act(dense * (2.0 * self.se(x)))

    def fused_dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias (float64) of dense + 1x1 as one 3x3 conv."""
        k3, b3 = self.rbr_dense.folded()
        if self.stride == 2:
            k1, b1 = self.rbr_1x1[1].folded()
            k1 = _fold.pooled_1x1_to_3x3(k1)
        else:
            k1, b1 = self.rbr_1x1.folded()
            k1 = _fold.plain_1x1_to_3x3(k1)
        return k3 + k1, b3 + b1

    def _conv(self, kernel: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
        return _fold.make_conv(kernel, bias, stride=self.stride, padding=1, groups=self.groups,
                               dtype=self.rbr_dense.conv.weight.dtype)

    def official_fuse(self) -> None:
        """The released code's fuse: dense + 1x1 only (baseline for comparisons)."""
        if self.rbr_reparam is not None or self.reparam_conv is not None:
            return
        self.rbr_reparam = self._conv(*self.fused_dense())
        self.rbr_dense = self.rbr_1x1 = None

    def reparameterize(self) -> None:
        if self.reparam_conv is not None:
            return
        if self.rbr_reparam is not None:
            kernel, bias = self.rbr_reparam.weight.double(), self.rbr_reparam.bias.double()
        else:
            kernel, bias = self.fused_dense()
        if self.rbr_identity is None:
            kernel, bias = 2.0 * kernel, 2.0 * bias  # (conv·2)·σ == conv·(2σ)
        self.reparam_conv = self._conv(kernel, bias)
        self.rbr_dense = self.rbr_1x1 = self.rbr_reparam = None

    def permute_input(self, perm: torch.Tensor) -> None:
        """Absorb ``x[:, perm]`` into the deploy-form convs (non-identity, groups 1 only)."""
        assert self.is_deployed and not self.has_identity and self.groups == 1
        for conv in (self.reparam_conv, self.se.cvsig.conv):
            conv.weight.data = _fold.permute_conv_input(conv.weight.data, perm)

    def scale_input(self, scale: torch.Tensor) -> None:
        """Absorb ``x * scale`` (per input channel) into the deploy-form convs (non-identity only)."""
        assert self.is_deployed and not self.has_identity
        for conv in (self.reparam_conv, self.se.cvsig.conv):
            conv.weight.data = _fold.scale_conv_input(conv.weight.double(), scale, self.groups).to(
                conv.weight.dtype)


class ParNetUnit(nn.Module):
    """A block followed, when it is grouped, by a channel shuffle (keys ``<name>.block.*``)."""

    def __init__(self, ci: int, co: int, stride: int = 1, groups: int = 1, act: str = "relu"):
        super().__init__()
        self.block = RepVGGBlock(ci, co, stride, groups, act)
        self.shuffle_groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        return channel_shuffle(x, self.shuffle_groups) if self.shuffle_groups > 1 else x


class ConvBNAct(nn.Module):
    """1x1 conv → BN → act: the small-input variant's narrow last layer (keys ``conv`` / ``bn``)."""

    def __init__(self, ci: int, co: int, act: str):
        super().__init__()
        self.conv = nn.Conv2d(ci, co, 1, bias=False)
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(co)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.act(self.bn(x) if self.bn is not None else x)

    def reparameterize(self) -> None:
        if self.bn is None:
            return
        kernel, bias = _fold.fold_bn_into_conv(self.conv.weight, self.bn)
        self.conv = _fold.make_conv(kernel, bias, stride=1, padding=0, groups=1, dtype=self.conv.weight.dtype)
        self.bn = None

    def permute_input(self, perm: torch.Tensor) -> None:
        self.conv.weight.data = _fold.permute_conv_input(self.conv.weight.data, perm)


class MultiBatchNorm2d(nn.Module):
    """One BN per input of a Fusion (keys ``b1``, ``b2``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.b1 = nn.BatchNorm2d(channels)
        self.b2 = nn.BatchNorm2d(channels)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.b1(a), self.b2(b)


class InterleaveConcat(nn.Module):
    """Concat two tensors channel-interleaved: a0, b0, a1, b1, ..."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack((a, b), dim=2).flatten(1, 2)


class ChannelShift(nn.Module):
    """``x + shift`` per channel: what stays of the Fusion BNs after their scales are folded."""

    def __init__(self, shift: torch.Tensor):
        super().__init__()
        self.shift = nn.Parameter(shift.view(1, -1, 1, 1).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def _interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack((a, b), dim=1).flatten()


class Fusion(nn.Sequential):
    """BN per input → interleaved concat → grouped block (→ optional tail: ``combine.3``).

    Deploy form: each BN's scale is folded into the first block's convs (exact: a scale
    commutes with zero padding), its shift stays as one :class:`ChannelShift` on the
    concatenated tensor (a shift does not commute with zero padding). A channel shuffle
    between the grouped block and a groups-1 tail is folded into the tail's input channels.
    """

    # Below this |scale| / max|scale| the shift / scale division would lose precision;
    # such a Fusion keeps its BNs.
    MIN_RELATIVE_SCALE = 1e-4

    def __init__(self, channels: int, co: int, stride: int, act: str, tail: nn.Module | None = None):
        modules: list[nn.Module] = [MultiBatchNorm2d(channels), InterleaveConcat(),
                                    ParNetUnit(2 * channels, co, stride, groups=2, act=act)]
        if tail is not None:
            modules.append(tail)
        super().__init__(*modules)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        pre, concat, *units = self
        x = pre(concat(a, b)) if isinstance(pre, ChannelShift) else concat(*pre(a, b))
        for unit in units:
            x = unit(x)
        return x

    def reparameterize(self) -> None:
        for unit in list(self)[2:]:
            unit.block.reparameterize() if isinstance(unit, ParNetUnit) else unit.reparameterize()
        first: ParNetUnit = self[2]
        if isinstance(self[0], MultiBatchNorm2d):
            s1, t1 = _fold.bn_scale_shift(self[0].b1)
            s2, t2 = _fold.bn_scale_shift(self[0].b2)
            scale, shift = _interleave(s1, s2), _interleave(t1, t2)
            # a meta-device model (the loader's shape check) has no values: it takes the fresh model's path
            if scale.is_meta or scale.abs().min() > self.MIN_RELATIVE_SCALE * scale.abs().max():
                first.block.scale_input(scale)
                self[0] = ChannelShift((shift / scale).to(self[0].b1.weight.dtype))
        if len(self) == 4 and first.shuffle_groups > 1:
            tail = self[3]
            tail_block = tail.block if isinstance(tail, ParNetUnit) else None
            if tail_block is None or (not tail_block.has_identity and tail_block.groups == 1):
                perm = _fold.channel_shuffle_perm(first.block.co, first.shuffle_groups)
                (tail_block or tail).permute_input(perm)
                first.shuffle_groups = 1


class ClassifierHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x.mean((2, 3))))


class ParNet(nn.Module):
    """Three streams at /4, /8, /16 fused into one head; depth 12 for every official variant."""

    def __init__(self, config: ParNetConfig):
        super().__init__()
        self.config = config
        p, act = config.planes, config.act
        if config.small_input:
            stem = [ParNetUnit(3, p[0], 1, act=act), ParNetUnit(p[0], p[0], 1, act=act),
                    ParNetUnit(p[0], p[0], 1, act=act)]
            tail: nn.Module = ConvBNAct(p[2], p[3], act)
        else:
            stem = [ParNetUnit(3, min(64, p[0]), 2, act=act), ParNetUnit(min(64, p[0]), p[0], 2, act=act)]
            tail = ParNetUnit(p[2], p[3], 2, act=act)
        self.inits = nn.ModuleList([nn.Sequential(*stem), ParNetUnit(p[0], p[1], 2, act=act),
                                    ParNetUnit(p[1], p[2], 2, act=act)])
        self.streams = nn.ModuleList([
            nn.Sequential(*[ParNetUnit(p[k], p[k], 1, act=act) for _ in range(config.num_blocks[k] - 1)])
            for k in range(3)
        ])
        self.downsamples_2 = nn.ModuleList([ParNetUnit(p[0], p[1], 2, act=act), Fusion(p[1], p[2], 2, act)])
        self.combine = Fusion(p[2], p[2], 1, act, tail=tail)
        self.head = ClassifierHead(p[3], config.num_classes, config.dropout)

    # -- the pieces the exporter cuts along ------------------------------------------------
    def stem(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[x0, x1, x2]``: the outputs of ``inits.0``, ``inits.0..1``, ``inits.0..2``."""
        xs = []
        for init in self.inits:
            x = init(x)
            xs.append(x)
        return xs

    def stream_output(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """``y{k}``: stream k on its input; stream 0 ends with ``downsamples_2.0``, which reads nothing else (the
        paper's table A1 lists it as "Stream1-Downsampling", in the first stream's column).

        Cut after that downsample, y0 carries half the bytes, and on OpenVINO's CPU plugin it is cut where the
        whole graph holds it in plain NCHW anyway (the Fusion's interleaving concat reads it so) rather than where
        a conv writes it channels-last: the cut adds no layout reorder (benchmarks/results/int8_cuts.md)."""
        y = self.streams[k](x)
        return self.downsamples_2[0](y) if k == 0 else y

    def fusion(self, y0: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        """``y0`` already downsampled (``stream_output``)."""
        d1 = self.downsamples_2[1](y1, y0)
        return self.head(self.combine(y2, d1))

    def cut_plan(self, split: str) -> tuple[Cut, ...]:
        """The subgraphs of a split (see ``models/cuts.py``). ``x{k}`` is the input of stream k (the output
        of ``inits.0..k``), ``y{k}`` its output. ``shared``: a ``stem`` computes x0, x1, x2 once;
        ``replicated`` (the official multi-GPU split): stream k takes the image and recomputes its prefix."""
        n = len(self.streams)
        fusion = Cut("fusion", tuple(f"y{k}" for k in range(n)), (LOGITS,), None, lambda *ys: [self.fusion(*ys)])
        if split == "shared":
            stem = Cut("stem", (IMAGE,), tuple(f"x{k}" for k in range(n)), None, self.stem)
            return (stem, *(Cut(f"stream{k}", (f"x{k}",), (f"y{k}",), k, lambda x, k=k: [self.stream_output(k, x)])
                            for k in range(n)), fusion)
        if split == "replicated":
            return (*(Cut(f"stream{k}", (IMAGE,), (f"y{k}",), k, lambda image, k=k: [self._stream_from_image(k, image)])
                      for k in range(n)), fusion)
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")

    def _stream_from_image(self, k: int, image: torch.Tensor) -> torch.Tensor:
        x = image
        for init in self.inits[:k + 1]:
            x = init(x)
        return self.stream_output(k, x)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ConfigError(f"expected input of shape (N, 3, H, W), got {tuple(x.shape)}")
        m = self.config.input_multiple
        h, w = x.shape[-2:]
        if h % m or w % m or h == 0 or w == 0:
            raise ConfigError(f"input sides must be positive multiples of {m} for {self.config.arch}, "
                              f"got {h}x{w}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.fx.Proxy):
            self.check_input(x)
        xs = self.stem(x)
        ys = [self.stream_output(k, xk) for k, xk in enumerate(xs)]
        return self.fusion(*ys)
