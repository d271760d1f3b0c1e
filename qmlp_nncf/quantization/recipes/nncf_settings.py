"""A recipe's global settings as ``nncf.quantize`` keyword arguments (both backends, and the probe's placement).

A leaf module: it imports no algorithm, so the post-pass, the probe and ``ptq`` can all use it.
"""
from __future__ import annotations

from typing import Optional

import nncf
from nncf.common.quantization.structs import QuantizationScheme
from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, AdvancedSmoothQuantParameters,
                                                   OverflowFix, QuantizationParameters)
from nncf.quantization.range_estimator import (AggregatorType, RangeEstimatorParameters, StatisticsCollectorParameters,
                                               StatisticsType)

from ..rules.calibration import estimator_rule
from ..rules.specs import RangeSpec
from .recipe import Recipe

NNCF_SEED_ITEMS = 64  # calibration items nncf.quantize sees when the post-pass recalibrates every quantizer


def nncf_range_estimator(rng: RangeSpec, symmetric: bool) -> RangeEstimatorParameters:
    """NNCF's global activation range estimator for ``rng`` (``calibration.ESTIMATOR_RULES``' rules)."""
    rule = estimator_rule(rng)
    if rule.quantile:
        p = 1.0 - rng.percentile / 100.0
        low = StatisticsCollectorParameters(StatisticsType.QUANTILE, AggregatorType.MEAN, quantile_outlier_prob=p)
        high = StatisticsCollectorParameters(StatisticsType.ABS_QUANTILE if symmetric else StatisticsType.QUANTILE,
                                             AggregatorType.MEAN, quantile_outlier_prob=p)
        return RangeEstimatorParameters(min=low, max=high)
    agg_min, agg_max = (AggregatorType.MEAN, AggregatorType.MEAN) if rule.mean else (AggregatorType.MIN,
                                                                                       AggregatorType.MAX)
    return RangeEstimatorParameters(min=StatisticsCollectorParameters(StatisticsType.MIN, agg_min),
                                    max=StatisticsCollectorParameters(StatisticsType.MAX, agg_max))


def nncf_kwargs(recipe: Recipe, ignored_scope: Optional[nncf.IgnoredScope]) -> dict:
    """The ``nncf.quantize`` keyword arguments of ``recipe`` (all but the model, the dataset and the subset size)."""
    s = recipe.nncf
    adv = {}
    if s.model_type == "transformer" and not s.smooth_quant:
        adv["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=-1)
    if s.range is not None:
        adv["activations_range_estimator_params"] = nncf_range_estimator(s.range, recipe.activations.symmetric)
    if recipe.recalibrate:  # the post-pass sets modes (and half-range weights); NNCF's only matter for the baselines
        adv["overflow_fix"] = OverflowFix.DISABLE
    else:
        if s.overflow_fix is not None:
            adv["overflow_fix"] = OverflowFix(s.overflow_fix)
        if s.preset is None:
            adv["activations_quantization_params"] = QuantizationParameters(mode=QuantizationScheme.SYMMETRIC)
    kw = dict(fast_bias_correction=True if s.fast_bias_correction else None,
              advanced_parameters=AdvancedQuantizationParameters(**adv))
    if s.model_type == "transformer":
        kw["model_type"] = nncf.ModelType.TRANSFORMER
    if s.preset is not None:
        kw["preset"] = nncf.QuantizationPreset(s.preset)
    if ignored_scope is not None:
        kw["ignored_scope"] = ignored_scope
    if s.target_device is not None:
        kw["target_device"] = nncf.TargetDevice[s.target_device]
    return kw
