"""Reparameterization of an NNCF torch model's norms and Linears (the package doc says what it does)."""
from __future__ import annotations

import copy
from typing import Optional

import nncf
import torch
from torch import nn

from ...recipes.knobs import Reparameterization
from ...rules.roles import GraphRoles, module_of
from .common import Fold, ReparamReport, channel_scales, spread


def _norm_params(module: nn.Module) -> Optional[tuple[nn.Parameter, nn.Parameter]]:
    """(scale, shift) parameters of a LayerNorm with affine parameters or of timm's ResMLP ``Affine``."""
    if isinstance(module, nn.LayerNorm) and module.weight is not None and module.bias is not None:
        return module.weight, module.bias
    if hasattr(module, "alpha") and hasattr(module, "beta"):
        return module.alpha, module.beta
    return None


def foldable_norms(model: nn.Module, roles: GraphRoles) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """``{norm module: (Linear modules it feeds)}`` for the norms that can be folded, and the others with why."""
    folds, skipped = {}, {}
    modules = dict(model.named_modules())
    for node in roles.graph.get_all_nodes():
        if roles.kind(node) not in ("norm", "affine"):
            continue
        norm = module_of(node.node_name)
        nexts = roles.graph.get_next_nodes(node)
        linears = tuple(module_of(n.node_name) for n in nexts)
        if _norm_params(modules.get(norm)) is None:
            skipped[norm] = "no affine parameters to fold into"
        elif not nexts or not all(roles.kind(n) == "matmul" and isinstance(modules.get(module_of(n.node_name)),
                                                                           nn.Linear) for n in nexts):
            skipped[norm] = ("read by " + ", ".join(sorted({roles.kind(n) for n in nexts})) +
                             ": only a norm that feeds Linears directly folds")
        elif any(modules[lin].weight.shape[1] != _norm_params(modules[norm])[0].numel() for lin in linears):
            skipped[norm] = "a Linear it feeds does not read its channel axis"
        else:
            folds[norm] = linears
    return folds, skipped


@torch.no_grad()
def _channel_ranges(model: nn.Module, norms: list[str], items: list[torch.Tensor], batch: int = 16):
    modules = dict(model.named_modules())
    lo: dict[str, torch.Tensor] = {}
    hi: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, _inputs, out):
            flat = out.detach().reshape(-1, out.shape[-1])
            low, high = flat.amin(0), flat.amax(0)
            lo[name] = torch.minimum(lo[name], low) if name in lo else low
            hi[name] = torch.maximum(hi[name], high) if name in hi else high
        return record

    handles = [modules[n].register_forward_hook(hook(n)) for n in norms]
    try:
        for i in range(0, len(items), batch):
            model(torch.cat(items[i:i + batch]))
    finally:
        for h in handles:
            h.remove()
    return lo, hi


@torch.no_grad()
def reparameterize(model: nn.Module, items: list[torch.Tensor], knobs: Reparameterization,
                   roles: Optional[GraphRoles] = None) -> tuple[nn.Module, ReparamReport]:
    """A copy of the float ``model`` with every foldable norm output equalised per channel (see the module doc),
    ranged on ``items``; ``model`` is left untouched."""
    model = copy.deepcopy(model).eval()
    roles = roles or GraphRoles(nncf.build_graph(model, example_input=items[0]))
    folds, skipped = foldable_norms(model, roles)
    report = ReparamReport(skipped=skipped)
    if not folds:
        return model, report
    lo, hi = _channel_ranges(model, list(folds), items)
    modules = dict(model.named_modules())
    for norm, linears in folds.items():
        centre, half, ratio = channel_scales(lo[norm], hi[norm], knobs)
        gamma, beta = _norm_params(modules[norm])
        shape = gamma.shape
        gamma.copy_((gamma.reshape(-1) / ratio).reshape(shape))
        beta.copy_(((beta.reshape(-1) - centre) / ratio).reshape(shape))
        for name in linears:
            linear = modules[name]
            shift = linear.weight @ centre
            linear.weight.mul_(ratio)
            if linear.bias is None:
                linear.bias = nn.Parameter(shift)
            else:
                linear.bias.add_(shift)
        report.folds.append(Fold(norm, linears, spread(half), spread(half / ratio)))
    return model, report
