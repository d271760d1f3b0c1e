"""The post-pass over NNCF's hook storage: re-specify, re-calibrate or remove each quantizer.

``nncf.quantize`` places the quantizers; this pass visits each one, finds its roles, applies the
matching rules, and installs a standard NNCF ``SymmetricQuantizer``/``AsymmetricQuantizer`` built
from the resulting spec, with its range from ``calibration.RangeCollector``. The result is still a
plain NNCF model: ``nncf.torch.get_config``/``load_from_config`` round-trip it, it trains (QAT),
and ``ov.convert_model`` turns every quantizer into a FakeQuantize.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable, Optional

import torch
from nncf.common.quantization.structs import QuantizationScheme, QuantizerConfig, QuantizerGroup
from nncf.common.tensor_statistics.statistics import MinMaxTensorStatistic
from nncf.quantization.fake_quantize import calculate_quantizer_parameters
from nncf.tensor import Tensor
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import (QUANTIZATION_MODULES, AsymmetricQuantizer, BaseQuantizer,
                                            PTQuantizerSpec, get_scale_shape)

from .calibration import RangeCollector, mse_shrink
from .placement import PlacementPlan
from .roles import GraphRoles, Site
from .rules import Rule, resolve
from .specs import QuantizerSpec, SpecError

# SmoothQuant puts the activation quantizer after its own multiply, inside a pre-hook of the Linear:
# post_hooks.<scope>/pre_hook__<op with / as ->__<port>[0]/mul/0__0.0
_SQ_HOOK = re.compile(r"^post_hooks\..*/pre_hook__(?P<op>.+)__(?P<port>\d+)\[\d+\]/mul/0__0\.\d+$")


CALIBRATION_BATCH = 16  # items per forward in the statistics pass (statistics stay per item)


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


def site_of(roles: GraphRoles, hook_name: str) -> Site:
    m = _SQ_HOOK.match(hook_name)
    if m:  # the tensor SmoothQuant scaled: roles of the Linear input it feeds
        op, port = m["op"].replace("-", "/"), int(m["port"])
        inner = roles.site(f"pre_hooks.{op}__{port}.0")
        return Site(hook_name, inner.op, inner.port, False, inner.roles, inner.consumers)
    return roles.site(hook_name)


def quantizer_sites(model: torch.nn.Module, roles: GraphRoles) -> list[Site]:
    storage = get_hook_storage(model)
    return [site_of(roles, name) for name, hook in storage.named_hooks() if isinstance(hook, BaseQuantizer)]


def check_half_range(spec: QuantizerSpec, is_weight: bool) -> bool:
    """Whether ``spec`` asks for NNCF's half-range (7-bit) weight levels here; on an activation it is an error."""
    if spec.half_range and not is_weight:
        raise SpecError(f"half_range applies to weights (NNCF's overflow fix), not to an activation quantizer "
                        f"({spec}): drop it from the activations spec or the rule that sets it")
    return spec.uses_half_range


def build_quantizer(spec: QuantizerSpec, scale_shape: tuple, low: torch.Tensor, high: torch.Tensor,
                    is_weight: bool) -> BaseQuantizer:
    """A standard NNCF quantizer for ``spec`` whose range is ``[low, high]`` (NNCF's own range math)."""
    mode = QuantizationScheme.SYMMETRIC if spec.symmetric else QuantizationScheme.ASYMMETRIC
    narrow = is_weight and spec.symmetric
    config = QuantizerConfig(num_bits=spec.bits, mode=mode, per_channel=spec.per_channel, narrow_range=narrow)
    stats = MinMaxTensorStatistic(min_values=Tensor(low.float()), max_values=Tensor(high.float()))
    group = QuantizerGroup.WEIGHTS if is_weight else QuantizerGroup.ACTIVATIONS
    params = calculate_quantizer_parameters(stats, config, group, half_range=check_half_range(spec, is_weight))
    qspec = PTQuantizerSpec.from_config(config, narrow_range=narrow, half_range=False, scale_shape=scale_shape,
                                        logarithm_scale=False, is_quantized_on_export=False)
    quantizer = QUANTIZATION_MODULES.get(mode)(qspec)
    input_low = params.input_low.data.reshape(scale_shape)
    input_high = params.input_high.data.reshape(scale_shape)
    if isinstance(quantizer, AsymmetricQuantizer):
        quantizer.input_low = torch.nn.Parameter(input_low)
        quantizer.input_range = torch.nn.Parameter(input_high - input_low - quantizer.eps)
    else:
        quantizer.signed = bool(torch.any(input_low < 0))
        quantizer.scale = torch.nn.Parameter(input_high - quantizer.eps)
    return quantizer


def site_weight(model: torch.nn.Module, roles: GraphRoles, site: Site) -> torch.Tensor:
    node = roles.graph.get_node_by_name(site.op)
    edge = next(e for e in roles.graph.get_input_edges(node) if e.input_port_id == site.port)
    return model.get_parameter(edge.from_node.node_name).detach()


def vector_weight_spec(spec: QuantizerSpec, weight_dims: int) -> QuantizerSpec:
    """A per-channel weight spec on a vector (a LayerNorm's gamma, which NNCF's default mode quantizes per tensor)
    is per-tensor: a vector has no channel axis to range over."""
    return replace(spec, per_channel=False) if spec.per_channel and weight_dims < 2 else spec


def weight_range(weight: torch.Tensor, spec: QuantizerSpec) -> tuple[tuple, torch.Tensor, torch.Tensor]:
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


def apply_placement(model: torch.nn.Module, roles: GraphRoles, plan: PlacementPlan,
                    placeholder: QuantizerSpec) -> list[tuple[str, ...]]:
    """Remove and insert the plan's quantizers as NNCF hooks (placeholders: :func:`respecify` specifies and
    calibrates them); returns the plan's shared-range groups as hook names."""
    storage = get_hook_storage(model)
    for name in plan.remove:
        storage.delete_hook(name)
    names = {}
    for ins in plan.insert:
        node = roles.graph.get_node_by_name(ins.op)
        if ins.reader is None or len(roles.graph.get_next_nodes(node)) == 1:
            names[ins] = f"post_hooks.{ins.op}__0.0"
        else:
            names[ins] = f"pre_hooks.{ins.reader}__{ins.port}.0"
        storage.insert_hook_by_name(names[ins], build_quantizer(placeholder, (1,), torch.tensor([-1.0]),
                                                                torch.tensor([1.0]), False))
    return plan.shared_names(names)


def calibrated_ranges(collectors: dict, shared: Iterable[tuple] = ()) -> dict[str, tuple[float, float]]:
    """Each collector's range; the quantizers of a ``shared`` group get one range, the union of theirs."""
    ranges = {name: c.range() for name, c in collectors.items()}
    for group in shared:
        members = [n for n in group if n in ranges]
        if members:
            union = (min(ranges[n][0] for n in members), max(ranges[n][1] for n in members))
            ranges.update(dict.fromkeys(members, union))
    return ranges


@torch.no_grad()
def respecify(model: torch.nn.Module, roles: GraphRoles, rules: Iterable[Rule], defaults: dict[str, QuantizerSpec],
              calibration: list[torch.Tensor], recalibrate: bool = True, shared: Iterable[tuple] = ()) -> list[Decision]:
    """Apply ``rules`` to every quantizer of the NNCF model ``model`` (in place).

    ``defaults`` holds the base spec of ``"weights"`` and ``"activations"``. With
    ``recalibrate=False`` (the stock-NNCF baselines) only the bit width changes and NNCF's
    range and mode stay; otherwise each quantizer is rebuilt from its spec and re-calibrated.
    ``shared``: groups of hook names whose quantizers get one range (``placement``'s Concat inputs).
    """
    rules = list(rules)
    storage = get_hook_storage(model)
    hooks = dict(storage.named_hooks())
    decisions = []
    for site in quantizer_sites(model, roles):
        spec, keep_float = resolve(site, rules, defaults["weights" if site.is_weight else "activations"])
        decisions.append(Decision(site, None if keep_float else spec))

    for d in decisions:
        if d.spec is None:
            storage.delete_hook(d.site.hook_name)
        elif not recalibrate:
            hooks[d.site.hook_name].num_bits = d.spec.bits

    if recalibrate:
        activations = [d for d in decisions if d.spec is not None and not d.site.is_weight]
        collectors = _collect(model, storage, hooks, activations, calibration)
        calibrated = calibrated_ranges(collectors, shared)
        for d in decisions:
            if d.spec is None:
                continue
            if d.site.is_weight:
                weight = site_weight(model, roles, d.site)
                d.spec = vector_weight_spec(d.spec, weight.dim())
                shape, low, high = weight_range(weight, d.spec)
            else:
                d.calibrated = calibrated[d.site.hook_name]
                shape, low, high = (1,), torch.tensor([d.calibrated[0]]), torch.tensor([d.calibrated[1]])
            quantizer = build_quantizer(d.spec, shape, low, high, d.site.is_weight)
            storage.delete_hook(d.site.hook_name)
            storage.insert_hook_by_name(d.site.hook_name, quantizer)
    if recalibrate:
        record_ranges(model, decisions)
    return decisions


def record_ranges(model: torch.nn.Module, decisions: list[Decision]) -> None:
    """Copy the installed per-tensor quantizers' ranges into their decisions (the report)."""
    hooks = dict(get_hook_storage(model).named_hooks())
    for d in decisions:
        q = hooks.get(d.site.hook_name) if d.spec is not None else None
        if q is not None and not q.per_channel:
            d.low, d.high = [float(quantizer_low(q))], [float(quantizer_high(q))]


def quantizer_low(q: BaseQuantizer) -> torch.Tensor:
    if isinstance(q, AsymmetricQuantizer):
        return q.input_low.detach().flatten()[0]
    return -q.scale.detach().flatten()[0] if q.signed else torch.tensor(0.0)


def quantizer_high(q: BaseQuantizer) -> torch.Tensor:
    if isinstance(q, AsymmetricQuantizer):
        return (q.input_low + q.input_range).detach().flatten()[0]
    return q.scale.detach().flatten()[0]


def _collect(model, storage, hooks, decisions: list[Decision], calibration: list[torch.Tensor]) -> dict:
    """Run the calibration items with quantizers off and a collector behind each quantizer."""
    collectors, handles = {}, []
    for d in decisions:
        collector = RangeCollector(d.spec)
        prefix = d.site.hook_name.rsplit(".", 1)[0]
        handles.append(storage.insert_hook_by_name(f"{prefix}.99", collector))
        collectors[d.site.hook_name] = collector
    quantizers = [h for h in hooks.values() if isinstance(h, BaseQuantizer)]
    for q in quantizers:
        q.disable_quantization()
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(calibration), CALIBRATION_BATCH):
            model(torch.cat(calibration[i:i + CALIBRATION_BATCH]))
    finally:
        for h in handles:
            h.remove()
        for q in quantizers:
            q.enable_quantization()
        model.train(was_training)
    return collectors
