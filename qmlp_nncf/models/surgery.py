"""Model surgery: turn a timm ``MlpMixer`` (MLP-Mixer, ResMLP or gMLP) into its Q-MLP variant in place.

Three remedies, each optional:

- ``layernorm``: ResMLP's ``Affine`` norms (before token mixing, before the channel MLP, final)
  become ``LayerNorm(eps=1e-6)`` initialised with weight = alpha, bias = beta. This CHANGES the
  function (LayerNorm also centres and scales each token); fine-tune afterwards. Mixer and gMLP
  already use LayerNorm: nothing to do.
- ``activation``: every GELU of the blocks (token and channel MLPs) becomes a bounded activation
  (``relu6``, fixed ``clip`` or ``learnable_clip``, see ``qmlp_blocks``). Changes the function.
- ``token_groups`` = G: token mixing split into G channel groups, each starting from a copy of the
  original token weights, so this part computes exactly the original function.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Callable, Optional

import torch
from timm.layers import GatedMlp
from timm.models.mlp_mixer import Affine, MixerBlock, MlpMixer, ResBlock, SpatialGatingBlock
from torch import nn

from .qmlp_blocks import (MULTI_TOKEN_BLOCKS, Clip, LearnableClip, MultiSpatialGatingBlock,
                          MultiTokenMixerBlock, MultiTokenResBlock, bounded_activation)

BASE_BLOCKS = {MixerBlock: "mixer", ResBlock: "resmlp", SpatialGatingBlock: "gmlp"}
LN_EPS = 1e-6
_GROUPED = re.compile(r"\.(mlp_tokens|linear_tokens|proj)\.\d+\.")


@dataclass(frozen=True)
class QmlpConfig:
    """Which Q-MLP remedies to apply (the defaults are the registered ``qmlp_*`` models)."""

    layernorm: bool = True  # ResMLP: Affine -> LayerNorm
    activation: Optional[str] = "relu6"  # relu6 | clip | learnable_clip | None (keep GELU)
    token_groups: int = 4  # G
    clip: tuple[float, float] = (0.0, 6.0)  # clip: fixed range; learnable_clip: (lower bound, initial upper)

    def __post_init__(self):
        if len(self.clip) != 2:
            raise ValueError(f"clip must be a (lo, hi) pair, got {self.clip!r}")
        object.__setattr__(self, "clip", (float(self.clip[0]), float(self.clip[1])))
        if self.activation is not None:
            bounded_activation(self.activation, self.clip)  # raises on bad names / ranges
        if isinstance(self.token_groups, bool) or not isinstance(self.token_groups, int) or self.token_groups < 1:
            raise ValueError(f"token_groups must be a positive integer, got {self.token_groups!r}")

    def act_layer(self) -> Optional[Callable[[], nn.Module]]:
        return None if self.activation is None else bounded_activation(self.activation, self.clip)

    def model_kwargs(self) -> dict:
        """The options that differ from the defaults (``model_kwargs`` of a checkpoint)."""
        default = QmlpConfig()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}


@dataclass
class ConversionReport:
    """What ``to_qmlp`` changed."""

    family: str
    blocks: int
    token_groups: int
    norms_replaced: int = 0  # Affine -> LayerNorm
    activations_replaced: int = 0  # GELU -> bounded
    activation: Optional[str] = None
    params_before: int = 0
    params_after: int = 0
    exact: bool = True  # True when the converted model computes the same function
    changes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = (f"{self.family}: {self.blocks} blocks, G={self.token_groups}, params {self.params_before:,} -> "
                f"{self.params_after:,}; function {'unchanged' if self.exact else 'CHANGED (fine-tune)'}")
        return "\n".join([head] + [f"  - {c}" for c in self.changes])

    def to_json(self) -> dict:
        return asdict(self)


def family_of_module(model: nn.Module) -> tuple[str, bool]:
    """``(family, is_qmlp)``: ``mixer``/``resmlp``/``gmlp`` from the block types of a timm ``MlpMixer``."""
    if not isinstance(model, MlpMixer):
        raise ValueError(f"expected a timm MlpMixer model (MLP-Mixer, ResMLP, gMLP), got {type(model).__name__}")
    kinds = {type(b) for b in model.blocks}
    lookup = {**BASE_BLOCKS, **{block: family for family, block in MULTI_TOKEN_BLOCKS.items()}}
    families = {lookup.get(k) for k in kinds}
    if None in families or len(families) != 1:
        raise ValueError(f"unsupported MlpMixer blocks {sorted(k.__name__ for k in kinds)}: expected only "
                         f"{', '.join(b.__name__ for b in lookup)} (one family per model)")
    return families.pop(), any(k in MULTI_TOKEN_BLOCKS.values() for k in kinds)


def _ratio(hidden: int, dim: int) -> float:
    """A ratio r with ``int(r * dim) == hidden`` (timm's rule), robust to float rounding."""
    r = hidden / dim
    return r if int(r * dim) == hidden else math.nextafter(r, math.inf)


def _copy_act(act: nn.Module) -> Callable[[], nn.Module]:
    return lambda: copy.deepcopy(act)


def _drop_path_rate(block: nn.Module) -> float:
    return float(getattr(block.drop_path, "drop_prob", 0.0))


def _ln_eps(norm: nn.Module) -> float:
    return norm.eps if isinstance(norm, nn.LayerNorm) else LN_EPS


def _new_block(block: nn.Module, family: str, cfg: QmlpConfig, seq_len: int) -> nn.Module:
    """An empty multi token-mixing block with the hyper-parameters of ``block``."""
    mlp = block.mlp_channels
    dim, hidden = mlp.fc1.in_features, mlp.fc1.out_features
    act = cfg.act_layer() or _copy_act(mlp.act)
    args = dict(act_layer=act, drop=mlp.drop1.p, drop_path=_drop_path_rate(block), token_groups=cfg.token_groups)
    if family == "mixer":
        norm = partial(nn.LayerNorm, eps=_ln_eps(block.norm1))
        ratio = (_ratio(block.mlp_tokens.fc1.out_features, dim), _ratio(hidden, dim))
        return MultiTokenMixerBlock(dim, seq_len, ratio, mlp_layer=type(mlp), norm_layer=norm, **args)
    if family == "resmlp":
        norm = partial(nn.LayerNorm, eps=_ln_eps(block.norm1)) if cfg.layernorm or isinstance(
            block.norm1, nn.LayerNorm) else Affine
        return MultiTokenResBlock(dim, seq_len, _ratio(hidden, dim), mlp_layer=type(mlp), norm_layer=norm, **args)
    gate_norm = partial(nn.LayerNorm, eps=mlp.gate.norm.eps)
    return MultiSpatialGatingBlock(dim, seq_len, _ratio(hidden, dim), mlp_layer=GatedMlp,
                                   norm_layer=partial(nn.LayerNorm, eps=_ln_eps(block.norm)),
                                   gate_norm_layer=gate_norm, **args)


def expand_state_dict(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a base model's state_dict (or a Q-MLP one) onto Q-MLP ``model``'s keys.

    Group ``k`` of a multi token-mixing layer takes the original token weights
    (``blocks.0.mlp_tokens.fc1.weight`` -> ``blocks.0.mlp_tokens.<k>.fc1.weight``); a LayerNorm that
    replaced an ``Affine`` takes weight = alpha, bias = beta; a learnable clip bound missing from
    ``source`` keeps ``model``'s value. Raises ``ValueError`` on anything that does not fit.
    """
    target = model.state_dict()
    out, used, problems = {}, set(), []
    for key, value in target.items():
        candidates = [key, _GROUPED.sub(r".\1.", key)]
        if key.endswith((".weight", ".bias")) and ("norm" in key.rsplit(".", 2)[-2]):
            candidates.append(key.rsplit(".", 1)[0] + (".alpha" if key.endswith(".weight") else ".beta"))
        src = next((c for c in candidates if c in source), None)
        if src is None:
            if key.endswith(".clip_val"):
                out[key] = value
                continue
            problems.append(f"{key} has no source")
            continue
        tensor = source[src]
        if tensor.numel() != value.numel():
            problems.append(f"{key} {tuple(value.shape)} <- {src} {tuple(tensor.shape)}")
            continue
        out[key] = tensor.reshape(value.shape).clone()
        used.add(src)
    unused = sorted(set(source) - used)
    if unused:
        problems.append(f"unused source keys {unused[:5]}{' ...' if len(unused) > 5 else ''}")
    if problems:
        raise ValueError("the weights do not fit the Q-MLP model: " + "; ".join(problems[:8]))
    return out


def to_qmlp(model: MlpMixer, layernorm: bool = True, activation: Optional[str] = "relu6", token_groups: int = 4,
            clip: tuple[float, float] = (0.0, 6.0)) -> ConversionReport:
    """Convert a timm MLP-Mixer / ResMLP / gMLP to Q-MLP **in place** (weights transferred).

    ``activation=None`` keeps GELU; ``layernorm=False`` keeps ResMLP's Affine norms; with both, the
    converted model computes the same function as the original for any G. Use ``copy.deepcopy``
    first to keep the original. Returns a report of what changed.
    """
    cfg = QmlpConfig(layernorm=layernorm, activation=activation, token_groups=token_groups, clip=clip)
    family, is_qmlp = family_of_module(model)
    if is_qmlp:
        raise ValueError("the model is already a Q-MLP model (it has multi token-mixing blocks)")
    seq_len = model.stem.num_patches
    report = ConversionReport(family=family, blocks=len(model.blocks), token_groups=cfg.token_groups,
                              activation=cfg.activation, params_before=_params(model))
    source = model.state_dict()
    gelus = sum(isinstance(m, nn.GELU) for m in model.blocks.modules())
    affines = sum(isinstance(m, Affine) for m in model.modules())

    old_blocks, old_norm = model.blocks, model.norm
    model.blocks = nn.Sequential(*[_new_block(b, family, cfg, seq_len) for b in old_blocks])  # validates G first
    if family == "resmlp" and cfg.layernorm and isinstance(model.norm, Affine):
        model.norm = nn.LayerNorm(model.embed_dim, eps=LN_EPS)
    try:
        model.load_state_dict(expand_state_dict(source, model))
    except ValueError:
        model.blocks, model.norm = old_blocks, old_norm
        raise
    model.train(model.training)

    report.params_after = _params(model)
    report.changes.append(f"token mixing: {cfg.token_groups} channel groups of {model.embed_dim // cfg.token_groups}"
                          if family != "gmlp" else f"spatial gating: {cfg.token_groups} channel groups")
    report.changes[-1] += ", each initialised from the original token weights (exact)"
    if family == "resmlp" and cfg.layernorm and affines:
        report.norms_replaced = affines
        report.exact = False
        report.changes.append(f"{affines} Affine norms -> LayerNorm(eps={LN_EPS}), weight=alpha, bias=beta "
                              f"(changes the function)")
    elif cfg.layernorm:
        report.changes.append("norms: already LayerNorm, unchanged")
    if cfg.activation is not None:
        bounded = (nn.ReLU6, Clip, LearnableClip)
        report.activations_replaced = sum(isinstance(m, bounded) for m in model.blocks.modules())
        report.exact = report.exact and not gelus
        report.changes.append(f"{gelus} GELU in the base blocks -> {cfg.activation} "
                              f"({report.activations_replaced} modules with the groups; changes the function)")
    return report


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
