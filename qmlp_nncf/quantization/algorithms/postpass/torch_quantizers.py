"""NNCF torch quantizers for the post-pass and the probe: a quantizer site of an NNCF model's hook storage (SmoothQuant's
hooks mapped to the Linear input they feed), standard NNCF ``SymmetricQuantizer``/``AsymmetricQuantizer`` modules
built from a spec and a range (NNCF's own range math), their range, and the report's ranges."""
from __future__ import annotations

import re

import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import QUANTIZATION_MODULES, AsymmetricQuantizer, BaseQuantizer, PTQuantizerSpec

from ...rules.calibration import batches
from ...rules.roles import GraphRoles, Site
from ...rules.specs import QuantizerSpec
from .parameters import Decision, quantizer_config, quantizer_parameters

# SmoothQuant puts the activation quantizer after its own multiply, inside a pre-hook of the Linear:
# post_hooks.<scope>/pre_hook__<op with / as ->__<port>[0]/mul/0__0.0
_SQ_HOOK = re.compile(r"^post_hooks\..*/pre_hook__(?P<op>.+)__(?P<port>\d+)\[\d+\]/mul/0__0\.\d+$")


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


def build_quantizer(spec: QuantizerSpec, scale_shape: tuple, low: torch.Tensor, high: torch.Tensor,
                    is_weight: bool) -> BaseQuantizer:
    """A standard NNCF quantizer for ``spec`` whose range is ``[low, high]`` (NNCF's own range math)."""
    params = quantizer_parameters(spec, low.float(), high.float(), is_weight)
    config = quantizer_config(spec, is_weight)
    qspec = PTQuantizerSpec.from_config(config, narrow_range=config.narrow_range, half_range=False,
                                        scale_shape=scale_shape, logarithm_scale=False, is_quantized_on_export=False)
    quantizer = QUANTIZATION_MODULES.get(config.mode)(qspec)
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


def run_batches(model: torch.nn.Module, items: list[torch.Tensor]) -> None:
    """Forward ``items`` (batch-1 tensors) through ``model`` in the calibration batches."""
    for batch in batches(items):
        model(torch.cat(batch))


__all__ = ["site_of", "quantizer_sites", "build_quantizer", "site_weight", "record_ranges", "quantizer_low",
           "quantizer_high", "run_batches"]
