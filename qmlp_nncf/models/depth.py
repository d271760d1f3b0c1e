"""Grow a trained model deeper: a deeper model of the same family starts from a shallower one's weights.

Progressive stacking (Gong et al., ICML 2019, "Efficient Training of BERT by Progressively Stacking"):
target block ``j`` of ``T`` copies source block ``j * S // T`` of ``S``, and a block repeated ``r`` times has
its residual branches scaled by ``1 / r`` (ResMLP's layer scales, else the branches' last Linear), so the
deeper model starts close to the function of the shallower one, to first order. The stem, final norm and
head are copied as they are. Used by ``qmlp train --grow-from``.
"""
from __future__ import annotations

import re
from collections import Counter

import torch

# The residual-branch parameters that are scaled by 1/r, per family (timm MlpMixer block attribute names).
BRANCH_SCALES = {
    "resmlp": ("ls1", "ls2"),
    "mixer": ("mlp_tokens.fc2.weight", "mlp_tokens.fc2.bias", "mlp_channels.fc2.weight", "mlp_channels.fc2.bias"),
    "gmlp": ("mlp_channels.fc2.weight", "mlp_channels.fc2.bias"),
}
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")


def num_blocks(state_dict: dict) -> int:
    ids = {int(m[1]) for k in state_dict if (m := _BLOCK.fullmatch(k))}
    if not ids:
        raise ValueError("the checkpoint has no blocks.<i>.* weights: it is not an MLP-Mixer/ResMLP/gMLP state dict")
    return max(ids) + 1


def source_of(target_blocks: int, source_blocks: int) -> list[int]:
    """The source block each target block copies."""
    if target_blocks < source_blocks:
        raise ValueError(f"cannot grow {source_blocks} blocks into {target_blocks}: the target must be deeper")
    return [j * source_blocks // target_blocks for j in range(target_blocks)]


def grow_state_dict(state_dict: dict, target_blocks: int, family: str) -> dict:
    """The state dict of a ``target_blocks``-deep model of ``family`` built from a shallower one."""
    if family not in BRANCH_SCALES:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(BRANCH_SCALES)}")
    src = source_of(target_blocks, num_blocks(state_dict))
    repeats = Counter(src)
    out = {k: v.clone() for k, v in state_dict.items() if not _BLOCK.fullmatch(k)}
    for j, i in enumerate(src):
        prefix = f"blocks.{i}."
        for k, v in state_dict.items():
            if k.startswith(prefix):
                name = k[len(prefix):]
                scale = 1.0 / repeats[i] if name in BRANCH_SCALES[family] else 1.0
                out[f"blocks.{j}.{name}"] = v.clone() * scale if scale != 1.0 else v.clone()
    return out


def grow_model(model: torch.nn.Module, source: torch.nn.Module, family: str) -> torch.nn.Module:
    """Load ``model`` (the deeper one) with the grown weights of ``source``; returns ``model``."""
    grown = grow_state_dict(source.state_dict(), num_blocks(model.state_dict()), family)
    try:
        model.load_state_dict(grown)
    except RuntimeError as e:
        detail = " ".join(str(e).split("\n\t")[1:3])[:300]
        raise ValueError(f"the source model does not fit the deeper model (same width and family needed): "
                         f"{detail}") from None
    return model
