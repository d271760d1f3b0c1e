"""The post-pass over NNCF's torch hook storage (:class:`TorchBackend`), with the quantizers of
``torch_quantizers``. The result is still a plain NNCF model: ``nncf.torch.get_config``/``load_from_config``
round-trip it, it trains (QAT), and ``ov.convert_model`` turns every quantizer into a FakeQuantize. Reparameterization,
range tuning, error correction and grid alignment are the torch backends of their own algorithms.
"""
from __future__ import annotations

import copy

import nncf
import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import BaseQuantizer

from ....checkpoint import is_quantized
from ....models.surgery import family_of_module
from ...rules.calibration import RangeCollector
from ...rules.placement import PlacementPlan
from ...rules.roles import GraphRoles
from ...rules.specs import QuantizerSpec
from ..error_correction import correct_weights
from ..range_tuning import tune_ranges
from ..reparam import reparameterize
from ..zero_grid import align_zero_points
from .backend import PostPassBackend
from .torch_quantizers import build_quantizer, quantizer_sites, record_ranges, run_batches, site_weight


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
