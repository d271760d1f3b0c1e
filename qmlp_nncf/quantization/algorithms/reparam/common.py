"""What both backends of the reparameterization share: the per-channel scales from the calibrated ranges of a norm's
output, and the report."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...recipes.knobs import Reparameterization


@dataclass
class Fold:
    """One folded norm: its module, the Linears it feeds, and its inter-channel range spread (largest channel
    half-width over the median one) before and after."""

    norm: str
    linears: tuple[str, ...]
    spread_before: float
    spread_after: float


@dataclass
class ReparamReport:
    folds: list[Fold] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # norm module -> why it was left as it is

    def to_dict(self) -> dict:
        return {"folded": [vars(f) for f in self.folds], "skipped": self.skipped}


def channel_scales(lo: torch.Tensor, hi: torch.Tensor, knobs: Reparameterization):
    """``(centre m, half-width h, r)`` per channel from the calibrated range ``[lo, hi]`` of a norm's output:
    ``r_c = (h_c / mean(h)) ** strength``, at least ``min_ratio``."""
    centre, half = (hi + lo) / 2, (hi - lo) / 2
    ratio = (half / half.mean().clamp_min(1e-12)).pow(knobs.strength).clamp_min(knobs.min_ratio)
    return centre, half, ratio


def spread(half: torch.Tensor) -> float:
    return float(half.max() / half.median().clamp_min(1e-12))


__all__ = ["Fold", "ReparamReport", "channel_scales", "spread"]
