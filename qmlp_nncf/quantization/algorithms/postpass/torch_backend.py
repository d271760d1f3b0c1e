"""The post-pass over NNCF's torch hook storage (:class:`TorchBackend`), and the torch quantizer helpers the probe
shares: standard NNCF ``SymmetricQuantizer``/``AsymmetricQuantizer`` modules built from a spec and a range. The
result is still a plain NNCF model: ``nncf.torch.get_config``/``load_from_config`` round-trip it, it trains (QAT),
and ``ov.convert_model`` turns every quantizer into a FakeQuantize.
"""
from __future__ import annotations

import copy
import re

import nncf
import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import QUANTIZATION_MODULES, AsymmetricQuantizer, BaseQuantizer, PTQuantizerSpec

from ....checkpoint import is_quantized
from ....models.surgery import family_of_module
from ...rules.calibration import RangeCollector, batches
from ...rules.placement import PlacementPlan
from ...rules.roles import GraphRoles, Site
from ...rules.specs import QuantizerSpec
from ..error_correction import correct_weights
from ..range_tuning import tune_ranges
from ..reparam import reparameterize
from ..zero_grid import align_zero_points
from .backend import PostPassBackend
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


class TorchBackend(PostPassBackend):
    """The post-pass over an NNCF torch model's quantizer hooks."""

    @classmethod
    def prepare(cls, model, recipe):
        if is_quantized(model):
            raise ValueError("the model already holds NNCF quantizers; quantize its float model (load the float "
                             "checkpoint, or keep the model you passed to quantize() before)")
        return model.eval()

    @classmethod
    def bind(cls, model, items, roles=True):
        family, is_qmlp = family_of_module(model)
        return cls(GraphRoles(nncf.build_graph(model, example_input=items[0])) if roles else None), family, is_qmlp

    def copy(self, model):
        return copy.deepcopy(model)

    def inputs(self, items):
        return items

    def nncf_kwargs(self, kwargs):
        if kwargs.get("target_device") == nncf.TargetDevice.CPU_SPR:
            # NNCF's torch backend refuses CPU_SPR; what its SPR pass changes (an int8 residual stream) is what the
            # fused placement does, so the torch model is quantized for CPU (the OpenVINO backend takes CPU_SPR)
            kwargs = {**kwargs, "target_device": nncf.TargetDevice.CPU}
        return kwargs

    def sites(self, model):
        return quantizer_sites(model, self.roles)

    def apply_placement(self, model, plan: PlacementPlan, placeholder: QuantizerSpec):
        storage = get_hook_storage(model)
        for name in plan.remove:
            storage.delete_hook(name)
        names = {}
        for ins in plan.insert:
            node = self.roles.graph.get_node_by_name(ins.op)
            if ins.reader is None or len(self.roles.graph.get_next_nodes(node)) == 1:
                names[ins] = f"post_hooks.{ins.op}__0.0"
            else:
                names[ins] = f"pre_hooks.{ins.reader}__{ins.port}.0"
            storage.insert_hook_by_name(names[ins], build_quantizer(placeholder, (1,), torch.tensor([-1.0]),
                                                                    torch.tensor([1.0]), False))
        return plan.shared_names(names)

    def collect(self, model, decisions, items):
        """A collector behind each quantizer (same hook slot), the quantizers off, the items run once."""
        storage = get_hook_storage(model)
        collectors, handles = {}, []
        for d in decisions:
            collector = RangeCollector(d.spec)
            prefix = d.site.hook_name.rsplit(".", 1)[0]
            handles.append(storage.insert_hook_by_name(f"{prefix}.99", collector))
            collectors[d.site.hook_name] = collector
        quantizers = [h for _, h in storage.named_hooks() if isinstance(h, BaseQuantizer)]
        for q in quantizers:
            q.disable_quantization()
        was_training = model.training
        model.eval()
        try:
            run_batches(model, items)
        finally:
            for h in handles:
                h.remove()
            for q in quantizers:
                q.enable_quantization()
            model.train(was_training)
        return collectors

    def bypass(self, model, site):
        get_hook_storage(model).delete_hook(site.hook_name)

    def set_bits(self, model, site, bits):
        dict(get_hook_storage(model).named_hooks())[site.hook_name].num_bits = bits

    def weight(self, model, site):
        return site_weight(model, self.roles, site)

    def install(self, model, decision, shape, low, high):
        storage = get_hook_storage(model)
        storage.delete_hook(decision.site.hook_name)
        storage.insert_hook_by_name(decision.site.hook_name,
                                    build_quantizer(decision.spec, shape, low, high, decision.site.is_weight))

    def finish(self, model, decisions, recalibrate):
        if recalibrate:
            record_ranges(model, decisions)

    def align_grids(self, quantized, decisions):
        moved = align_zero_points(quantized)
        if moved:
            record_ranges(quantized, decisions)
        return moved

    def tune_ranges(self, quantized, model, items, recipe, decisions, log):
        log(f"{recipe.name}: tuning the quantizer ranges ({recipe.range_tuning.steps} steps on "
            f"{len(items)} calibration items)")
        tuning = tune_ranges(quantized, model, items, recipe.range_tuning, log, roles=self.roles)
        log(f"{recipe.name}: range tuning took KL to the float model {tuning['kl_before']:.4f} -> "
            f"{tuning['kl_after']:.4f} in {tuning['seconds']:.0f} s")
        record_ranges(quantized, decisions)
        return tuning

    def reparameterize(self, model, items, knobs):
        folded, report = reparameterize(model, items, knobs, self.roles)
        return folded, report.to_dict()

    def correct_weights(self, quantized, model, items, knobs, log, keep_float=()):
        """``keep_float``: sites whose quantizers stay off while the weights are solved."""
        hooks = dict(get_hook_storage(quantized).named_hooks())
        off = [hooks[s.hook_name] for s in keep_float if s.hook_name in hooks]
        for q in off:
            q.disable_quantization()
        try:
            return correct_weights(quantized, model, items, self.roles, knobs, log)
        finally:
            for q in off:
                q.enable_quantization()
