"""Per-op range statistics on the calibration set, at the exact place of each quantizer.

NNCF's range estimators are global; Q-MLP chooses them per op. A ``RangeCollector`` is inserted
into NNCF's hook storage right after the quantizer it calibrates (same hook slot), the quantizers
are switched off, the calibration items run once, and each collector reduces what it saw with
its own estimator. Each forward call is one calibration item (NNCF feeds batch-1 items).
"""
from __future__ import annotations

import torch
from torch import nn

from .specs import QuantizerSpec


class RangeCollector(nn.Module):
    """Observes a tensor and reduces it to ``(low, high)`` with the spec's range estimator."""

    def __init__(self, spec: QuantizerSpec):
        super().__init__()
        self.spec = spec
        self._lows: list[float] = []
        self._highs: list[float] = []
        self._min = float("inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.detach().reshape(-1).double()
        self._min = min(self._min, float(v.min()))
        rng = self.spec.range
        if rng.estimator == "percentile":
            q = rng.percentile / 100.0
            if self.spec.symmetric:
                self._highs.append(float(torch.quantile(v.abs(), q)))
            else:
                lo, hi = torch.quantile(v, torch.tensor([1.0 - q, q], dtype=v.dtype))
                self._lows.append(float(lo))
                self._highs.append(float(hi))
        else:
            self._lows.append(float(v.min()))
            self._highs.append(float(v.max()))
        return x

    def range(self) -> tuple[float, float]:
        """``(low, high)``; symmetric ranges are ``(-a, a)``, or ``(0, a)`` for non-negative tensors."""
        if not self._highs:
            raise RuntimeError("the calibration data never reached this quantizer")
        if self.spec.range.estimator == "min_max":
            low, high = min(self._lows), max(self._highs)
        else:
            low = sum(self._lows) / len(self._lows) if self._lows else 0.0
            high = sum(self._highs) / len(self._highs)
        if self.spec.symmetric:
            a = max(abs(low), abs(high))
            return (-a if self._min < 0 else 0.0), a
        return low, high
