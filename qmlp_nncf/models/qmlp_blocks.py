"""Q-MLP building blocks: bounded activations and multi token-mixing blocks for timm's ``MlpMixer``.

The blocks take the same constructor arguments as timm's ``MixerBlock`` / ``ResBlock`` /
``SpatialGatingBlock`` (so ``MlpMixer(block_layer=partial(MultiTokenMixerBlock, token_groups=4))``
works) plus ``token_groups`` = G: the channel dimension is split into G contiguous groups and each
group gets its own full-width token-mixing MLP (Mixer), token ``Linear`` (ResMLP) or spatial-gating
projection (gMLP). Parameters of token mixing grow xG, FLOPs stay the same.

Quantizer placement: each group's input is cut with ``Tensor.narrow``. NNCF treats ``split``,
``chunk`` and ``__getitem__`` as quantization-agnostic and propagates the per-group input
quantizers up through them, merging them into one at the LayerNorm output; ``narrow`` has no
NNCF metatype, so propagation stops there and every group's ``Linear`` keeps its own input
quantizer. In OpenVINO ``narrow`` becomes a ``Slice`` followed by the FakeQuantize and an int8
``FullyConnected``. The groups live in ``ChannelGroups`` (a ``ModuleList`` with a ``forward`` holding
an explicit loop), which keeps ``mlp_tokens/<k>`` in NNCF node names.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Type, Union

import torch
from timm.layers import DropPath, GatedMlp, Mlp, to_2tuple
from torch import nn


# ---------------------------------------------------------------- bounded activations
class Clip(nn.Module):
    """Fixed clip ``clamp(x, lo, hi)`` (OpenVINO ``Clamp``)."""

    def __init__(self, lo: float = 0.0, hi: float = 6.0):
        super().__init__()
        if not lo < hi:
            raise ValueError(f"Clip needs lo < hi, got lo={lo}, hi={hi}")
        self.lo, self.hi = float(lo), float(hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.lo, self.hi)

    def extra_repr(self) -> str:
        return f"lo={self.lo}, hi={self.hi}"


class LearnableClip(nn.Module):
    """PACT-style clipped ReLU ``min(max(x, lo), clip_val)`` with a trainable upper bound.

    Gradients: 1 w.r.t. ``x`` inside ``(lo, clip_val)`` and 0 outside; w.r.t. ``clip_val`` 1 for
    every element above the bound (0.5 for an element exactly on it), so the bound grows when
    the loss wants larger activations and weight decay pulls it down otherwise. Exports as
    ``Maximum`` + ``Minimum``.
    """

    def __init__(self, init: float = 6.0, lo: float = 0.0):
        super().__init__()
        if not init > lo:
            raise ValueError(f"LearnableClip needs init > lo, got init={init}, lo={lo}")
        self.lo = float(lo)
        self.clip_val = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.clamp(x, min=self.lo), self.clip_val)

    def extra_repr(self) -> str:
        return f"lo={self.lo}, clip_val={float(self.clip_val):.4g}"


ACTIVATIONS = ("relu6", "clip", "learnable_clip")


def bounded_activation(name: str, clip: tuple[float, float] = (0.0, 6.0)) -> Callable[[], nn.Module]:
    """A factory (timm ``act_layer``) for ``relu6``, ``clip`` (fixed ``clip`` range) or
    ``learnable_clip`` (lower bound ``clip[0]``, upper bound initialised to ``clip[1]``)."""
    lo, hi = clip
    if name == "relu6":
        return nn.ReLU6
    if name == "clip":
        Clip(lo, hi)  # validate now rather than at model build time
        return partial(Clip, lo, hi)
    if name == "learnable_clip":
        LearnableClip(hi, lo)
        return partial(LearnableClip, hi, lo)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)} (or None for GELU)")


# ---------------------------------------------------------------- multi token mixing
def _check_groups(channels: int, groups: int, what: str) -> int:
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"token_groups must be a positive integer, got {groups!r}")
    if channels % groups:
        raise ValueError(f"token_groups={groups} does not divide the {channels} channels of the {what}; "
                         f"choose a divisor of {channels}")
    return channels // groups


def _drop_path(p: float) -> nn.Module:
    return DropPath(p) if p > 0.0 else nn.Identity()


class ChannelGroups(nn.ModuleList):
    """Module k maps channel group k of a ``(B, C, N)`` tensor (dim 1, contiguous, C/G channels each);
    the outputs are concatenated along dim 1.

    Being a ``ModuleList`` with a ``forward``, it sits on the module call stack, so NNCF names the
    group modules ``.../mlp_tokens/<k>/fc1/linear/0`` (a plain ``ModuleList`` iterated by the parent
    block is skipped: the names would lose ``mlp_tokens/<k>``).
    """

    def __init__(self, modules: list[nn.Module], channels: int, what: str):
        super().__init__(modules)
        self.group_dim = _check_groups(channels, len(modules), what)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for g, module in enumerate(self):
            outs.append(module(x.narrow(1, g * self.group_dim, self.group_dim)))
        return torch.cat(outs, 1)


class MultiTokenMixerBlock(nn.Module):
    """MLP-Mixer block whose token-mixing MLP is G MLPs, one per contiguous channel group."""

    def __init__(self, dim: int, seq_len: int, mlp_ratio: Union[float, tuple[float, float]] = (0.5, 4.0),
                 mlp_layer: Type[nn.Module] = Mlp, norm_layer: Callable = partial(nn.LayerNorm, eps=1e-6),
                 act_layer: Callable = nn.GELU, drop: float = 0.0, drop_path: float = 0.0, token_groups: int = 4, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        _check_groups(dim, token_groups, "block")
        tokens_dim, channels_dim = [int(r * dim) for r in to_2tuple(mlp_ratio)]
        self.norm1 = norm_layer(dim, **dd)
        self.mlp_tokens = ChannelGroups(
            [mlp_layer(seq_len, tokens_dim, act_layer=act_layer, drop=drop, **dd) for _ in range(token_groups)],
            dim, "block")
        self.drop_path = _drop_path(drop_path)
        self.norm2 = norm_layer(dim, **dd)
        self.mlp_channels = mlp_layer(dim, channels_dim, act_layer=act_layer, drop=drop, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        x = x + self.drop_path(self.mlp_channels(self.norm2(x)))
        return x


class MultiTokenResBlock(nn.Module):
    """ResMLP block whose token-mixing ``Linear`` is G Linears, one per contiguous channel group."""

    def __init__(self, dim: int, seq_len: int, mlp_ratio: float = 4, mlp_layer: Type[nn.Module] = Mlp,
                 norm_layer: Callable = partial(nn.LayerNorm, eps=1e-6), act_layer: Callable = nn.GELU,
                 init_values: float = 1e-4, drop: float = 0.0, drop_path: float = 0.0, token_groups: int = 4,
                 device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        _check_groups(dim, token_groups, "block")
        self.norm1 = norm_layer(dim, **dd)
        self.linear_tokens = ChannelGroups([nn.Linear(seq_len, seq_len, **dd) for _ in range(token_groups)],
                                           dim, "block")
        self.drop_path = _drop_path(drop_path)
        self.norm2 = norm_layer(dim, **dd)
        self.mlp_channels = mlp_layer(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop, **dd)
        self.ls1 = nn.Parameter(init_values * torch.ones(dim, **dd))
        self.ls2 = nn.Parameter(init_values * torch.ones(dim, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1 * self.linear_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        x = x + self.drop_path(self.ls2 * self.mlp_channels(self.norm2(x)))
        return x


class MultiSpatialGatingUnit(nn.Module):
    """gMLP spatial gating with G projections, one per contiguous group of the gate channels."""

    def __init__(self, dim: int, seq_len: int, norm_layer: Callable = nn.LayerNorm, token_groups: int = 4,
                 device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        gate_dim = dim // 2
        self.norm = norm_layer(gate_dim, **dd)
        self.proj = ChannelGroups([nn.Linear(seq_len, seq_len, **dd) for _ in range(token_groups)], gate_dim,
                                  "spatial gate (half the channel MLP width)")

    def init_weights(self) -> None:
        """timm's gMLP gate init (near-zero weights, unit bias), called by ``MlpMixer.init_weights``."""
        for proj in self.proj:
            nn.init.normal_(proj.weight, std=1e-6)
            nn.init.ones_(proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, dim=-1)
        return u * self.proj(self.norm(v).transpose(-1, -2)).transpose(-1, -2)


class MultiSpatialGatingBlock(nn.Module):
    """gMLP block whose spatial gating unit has G projections."""

    def __init__(self, dim: int, seq_len: int, mlp_ratio: float = 4, mlp_layer: Type[nn.Module] = GatedMlp,
                 norm_layer: Callable = partial(nn.LayerNorm, eps=1e-6), act_layer: Callable = nn.GELU,
                 drop: float = 0.0, drop_path: float = 0.0, token_groups: int = 4,
                 gate_norm_layer: Callable = nn.LayerNorm, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        channel_dim = int(dim * mlp_ratio)
        _check_groups(channel_dim // 2, token_groups, "spatial gate (half the channel MLP width)")
        self.norm = norm_layer(dim, **dd)
        sgu = partial(MultiSpatialGatingUnit, seq_len=seq_len, token_groups=token_groups, norm_layer=gate_norm_layer)
        self.mlp_channels = mlp_layer(dim, channel_dim, act_layer=act_layer, gate_layer=sgu, drop=drop, **dd)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mlp_channels(self.norm(x)))


MULTI_TOKEN_BLOCKS = {"mixer": MultiTokenMixerBlock, "resmlp": MultiTokenResBlock, "gmlp": MultiSpatialGatingBlock}
