"""What both backends share of one quantizer: the report row (:class:`Decision`), the NNCF quantizer parameters
of a spec and a range (NNCF's own ``calculate_quantizer_parameters``), weight ranges, and shared-range groups."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Optional

import torch
from nncf.common.quantization.structs import QuantizationScheme, QuantizerConfig, QuantizerGroup
from nncf.common.tensor_statistics.statistics import MinMaxTensorStatistic
from nncf.quantization.fake_quantize import FakeQuantizeParameters, calculate_quantizer_parameters
from nncf.tensor import Tensor
from nncf.torch.quantization.layers import get_scale_shape

from ...rules.calibration import mse_shrink
from ...rules.roles import Site
from ...rules.specs import QuantizerSpec, SpecError


@dataclass
class Decision:
    """What the pass did with one quantizer (one row of the quantization report)."""

    site: Site
    spec: Optional[QuantizerSpec]  # None: removed (kept in float)
    low: Optional[list] = None  # the installed quantizer's range (after NNCF's zero-point alignment)
    high: Optional[list] = None
    calibrated: Optional[tuple] = None  # the estimator's raw (low, high) on the calibration set

    def to_dict(self) -> dict:
        d = {"hook": self.site.hook_name, "roles": sorted(self.site.roles), "float": self.spec is None}
        if self.spec is not None:
            d.update(self.spec.to_dict())
            if self.low is not None and len(self.low) == 1:
                d.update(low=self.low[0], high=self.high[0])
            if self.calibrated is not None:
                d.update(calibrated_low=self.calibrated[0], calibrated_high=self.calibrated[1])
        return d


def check_half_range(spec: QuantizerSpec, is_weight: bool) -> bool:
    """Whether ``spec`` asks for NNCF's half-range (7-bit) weight levels here; on an activation it is an error."""
    if spec.half_range and not is_weight:
        raise SpecError(f"half_range applies to weights (NNCF's overflow fix), not to an activation quantizer "
                        f"({spec}): drop it from the activations spec or the rule that sets it")
    return spec.uses_half_range


def quantizer_config(spec: QuantizerSpec, is_weight: bool) -> QuantizerConfig:
    """NNCF's config of ``spec``: narrow range for symmetric weights."""
    mode = QuantizationScheme.SYMMETRIC if spec.symmetric else QuantizationScheme.ASYMMETRIC
    return QuantizerConfig(num_bits=spec.bits, mode=mode, per_channel=spec.per_channel,
                           narrow_range=is_weight and spec.symmetric)


def quantizer_parameters(spec: QuantizerSpec, low, high, is_weight: bool) -> FakeQuantizeParameters:
    """NNCF's quantizer parameters (input/output low and high, levels) of ``spec`` over the range ``[low, high]``:
    float32 arrays of the backend (torch tensors or numpy arrays), NNCF's own range math on both."""
    stats = MinMaxTensorStatistic(min_values=Tensor(low), max_values=Tensor(high))
    group = QuantizerGroup.WEIGHTS if is_weight else QuantizerGroup.ACTIVATIONS
    return calculate_quantizer_parameters(stats, quantizer_config(spec, is_weight), group,
                                          half_range=check_half_range(spec, is_weight))


def vector_weight_spec(spec: QuantizerSpec, weight_dims: int) -> QuantizerSpec:
    """A per-channel weight spec on a vector (a LayerNorm's gamma, which NNCF's default mode quantizes per tensor)
    is per-tensor: a vector has no channel axis to range over."""
    return replace(spec, per_channel=False) if spec.per_channel and weight_dims < 2 else spec


def weight_range(weight: torch.Tensor, spec: QuantizerSpec) -> tuple[tuple, torch.Tensor, torch.Tensor]:
    """``(scale shape, low, high)`` of a weight (output channels on axis 0) for ``spec``."""
    shape = tuple(get_scale_shape(list(weight.shape), is_weights=True, per_channel=spec.per_channel))
    dims = tuple(range(1, weight.dim())) if spec.per_channel else tuple(range(weight.dim()))
    low, high = weight.amin(dim=dims), weight.amax(dim=dims)
    if spec.symmetric:  # NNCF's symmetric range is [-max, max]: pass |w|max, or the negative tail is clipped
        high = torch.maximum(low.abs(), high.abs())
        low = -high
    if spec.range.estimator == "mse":  # narrow range for symmetric weights: one level fewer
        rows = weight.reshape(weight.shape[0], -1) if spec.per_channel else weight.reshape(1, -1)
        f = mse_shrink(rows, low.reshape(-1, 1), high.reshape(-1, 1), spec.levels - spec.symmetric, dim=1)
        low, high = low * f.reshape(low.shape), high * f.reshape(high.shape)
    return shape, low.reshape(shape), high.reshape(shape)


def limits(spec: QuantizerSpec, weight: Optional[torch.Tensor] = None, calibrated: Optional[tuple] = None
           ) -> tuple[QuantizerSpec, tuple, torch.Tensor, torch.Tensor]:
    """``(spec, scale shape, low, high)`` of one quantizer: of its ``weight`` (output channels on axis 0; a vector's
    spec becomes per-tensor), or of an activation's ``calibrated`` ``(low, high)``."""
    if weight is not None:
        spec = vector_weight_spec(spec, weight.dim())
        return (spec, *weight_range(weight, spec))
    return spec, (1,), torch.tensor([calibrated[0]]), torch.tensor([calibrated[1]])


def calibrated_ranges(collectors: dict, shared: Iterable[tuple] = ()) -> dict[str, tuple[float, float]]:
    """Each collector's range; the quantizers of a ``shared`` group get one range, the union of theirs."""
    ranges = {name: c.range() for name, c in collectors.items()}
    for group in shared:
        members = [n for n in group if n in ranges]
        if members:
            union = (min(ranges[n][0] for n in members), max(ranges[n][1] for n in members))
            ranges.update(dict.fromkeys(members, union))
    return ranges
