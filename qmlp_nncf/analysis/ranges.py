"""Activation-range statistics: max |x| and a high percentile of |x| at the input of every ``nn.Linear``.

The percentile is exact (not a per-batch estimate): each layer keeps only the largest values of |x|
that the percentile can depend on, so memory stays small for any number of images.
"""
from __future__ import annotations

import math
import statistics
from typing import Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..quantization.rules.calibration import quantile_from_top


class _TopK:
    """Running top-``k`` of |x| over all calls, plus the element count."""

    def __init__(self, k: int):
        self.k, self.values, self.n = k, torch.empty(0), 0

    def __call__(self, module, inputs) -> None:
        x = inputs[0].detach().abs().flatten().float()
        self.n += x.numel()
        top = torch.topk(x, min(self.k, x.numel())).values
        merged = torch.cat([self.values, top])
        self.values = torch.topk(merged, min(self.k, merged.numel())).values


def _percentile_from_top(values: torch.Tensor, n: int, q: float) -> float:
    """``torch.quantile(all, q / 100)`` from the largest values of ``all`` (sorted descending)."""
    return float(quantile_from_top(values, n, q / 100))


@torch.no_grad()
def linear_input_ranges(model: nn.Module, dataset: Dataset, n_images: Optional[int] = 512, batch_size: int = 64,
                        percentile: float = 99.99) -> tuple[list[dict], dict]:
    """Per-layer ranges of the inputs of every ``nn.Linear`` of ``model`` over ``dataset``.

    Uses the first ``n_images`` items (all when ``None``). Returns ``(layers, summary)``: one dict
    per layer in module order ``{"name", "max_abs", "percentile", "numel"}`` (``percentile`` = the
    ``percentile``-th percentile of |x| over all elements of all images), and the median and max
    over layers of both statistics.
    """
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    if n_images is not None:
        if n_images < 1:
            raise ValueError(f"n_images must be positive, got {n_images}")
        dataset = Subset(dataset, range(min(n_images, len(dataset))))
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layers")
    loader = DataLoader(dataset, batch_size=batch_size)

    # the percentile needs the top (1 - q) fraction of elements; count them with one probe batch
    was_training = model.training
    model.eval()
    counters: dict[str, _TopK] = {}
    probe = {name: _TopK(1) for name, _ in linears}
    handles = [m.register_forward_pre_hook(probe[name]) for name, m in linears]
    try:
        x = next(iter(DataLoader(Subset(dataset, [0]), batch_size=1)))[0]
        model(x)
        for h in handles:
            h.remove()
        for name, m in linears:
            total = probe[name].n * len(dataset)
            counters[name] = _TopK(math.floor((1 - percentile / 100) * (total - 1)) + 2)
        handles = [m.register_forward_pre_hook(counters[name]) for name, m in linears]
        for x, _ in loader:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    layers = []
    for name, _ in linears:
        c = counters[name]
        if c.n == 0:
            continue  # defined but never called
        layers.append({"name": name, "max_abs": float(c.values[0]),
                       "percentile": _percentile_from_top(c.values, c.n, percentile), "numel": c.n})
    return layers, summarize(layers, percentile)


def summarize(layers: list[dict], percentile: float = 99.99) -> dict:
    """Median and max over layers of ``max_abs`` and ``percentile``."""
    maxes, pcts = [l["max_abs"] for l in layers], [l["percentile"] for l in layers]
    return {"layers": len(layers), "percentile": percentile,
            "median_max_abs": statistics.median(maxes), "max_max_abs": max(maxes),
            "median_percentile": statistics.median(pcts), "max_percentile": max(pcts)}
