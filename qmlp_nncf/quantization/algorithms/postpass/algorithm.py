"""The post-pass, once for both backends: ``nncf.quantize`` with the recipe's global settings, then per quantizer
placement -> spec resolution (family and recipe rules) -> ranges -> install, over a :class:`~.backend.PostPassBackend`.

``nncf.quantize`` places the quantizers; the pass visits each one, finds its roles, applies the matching rules,
and removes it (kept in float) or rebuilds it from the resulting spec with its range from
``calibration.RangeCollector`` (``recalibrate=False``, the stock-NNCF baselines: only the bit width changes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import nncf
import torch

from ....ir_file import is_openvino_model
from ....progress import log_line
from ...recipes.nncf_settings import NNCF_SEED_ITEMS, nncf_kwargs
from ...recipes.recipe import Recipe
from ...rules.family_rules import family_rules, placed_rules
from ...rules.ignored_scope import check_ignored_scope, check_scopes
from ...rules.placement import plan as placement_plan
from ...rules.rule import Rule, resolve
from ...rules.specs import QuantizerSpec
from ..common import QuantizationResult, calibration_items, note_unconverted, short_data_note
from .backend import PostPassBackend
from .parameters import Decision, calibrated_ranges, limits


@torch.no_grad()
def respecify(backend: PostPassBackend, model, rules: Iterable[Rule], defaults: dict[str, QuantizerSpec],
              items: list[torch.Tensor], recalibrate: bool = True, shared: Iterable[tuple] = ()) -> list[Decision]:
    """Apply ``rules`` to every quantizer of the quantized ``model`` (in place).

    ``defaults`` holds the base spec of ``"weights"`` and ``"activations"``. With ``recalibrate=False`` only the
    bit width changes and NNCF's range and mode stay; otherwise each quantizer is rebuilt from its spec and
    re-calibrated. ``shared``: groups of site names whose quantizers get one range (``placement``'s Concat inputs).
    """
    rules = list(rules)
    decisions = []
    for site in backend.sites(model):
        spec, keep_float = resolve(site, rules, defaults["weights" if site.is_weight else "activations"])
        decisions.append(Decision(site, None if keep_float else spec))
    calibrated = {}
    if recalibrate:
        watch = [d for d in decisions if d.spec is not None and not d.site.is_weight]
        calibrated = calibrated_ranges(backend.collect(model, watch, items), shared)
    for d in decisions:
        if d.spec is None:
            backend.bypass(model, d.site)
        elif not recalibrate:
            backend.set_bits(model, d.site, d.spec.bits)
        elif d.site.is_weight:
            d.spec, shape, low, high = limits(d.spec, weight=backend.weight(model, d.site))
            backend.install(model, d, shape, low, high)
        else:
            d.calibrated = calibrated[d.site.hook_name]
            d.spec, shape, low, high = limits(d.spec, calibrated=d.calibrated)
            backend.install(model, d, shape, low, high)
    backend.finish(model, decisions, recalibrate)
    return decisions


STREAM_ROLES = frozenset({"residual_add", "token_mixing_output"})  # tensors that corrected Linears' outputs make


def stream_decisions(decisions: list[Decision]) -> list[Decision]:
    """The activation quantizers on the residual stream and the token outputs (``STREAM_ROLES``)."""
    return [d for d in decisions if d.spec is not None and not d.site.is_weight and d.site.roles & STREAM_ROLES]


@torch.no_grad()
def recalibrate_streams(backend: PostPassBackend, model, decisions: list[Decision], items: list[torch.Tensor],
                        shared: Iterable[tuple] = ()) -> int:
    """The ranges of the quantizers on the residual stream and the token outputs again, on ``model`` as it is now.

    Error correction changes the Linears' weights and biases after calibration; a quantizer on a corrected Linear's
    output (the fused placement's token outputs and residual stream) then clips values its stale range leaves out
    (ResMLP-12 W4A8 with error correction: 0.3 pt). The Linears' input quantizers keep their ranges: the corrected
    weights were solved for them. Returns how many quantizers were re-ranged."""
    watch = stream_decisions(decisions)
    if not watch:
        return 0
    calibrated = calibrated_ranges(backend.collect(model, watch, items), shared)
    for d in watch:
        d.calibrated = calibrated[d.site.hook_name]
        d.spec, shape, low, high = limits(d.spec, calibrated=d.calibrated)
        backend.install(model, d, shape, low, high)
    backend.finish(model, decisions, True)
    return len(watch)


def compress_weights(backend: PostPassBackend, model, recipe: Recipe, items: list[torch.Tensor]):
    """``nncf.compress_weights`` (a weight-only recipe) on a copy of ``model``."""
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    wc = recipe.weight_compression
    return nncf.compress_weights(
        backend.copy(model), mode=nncf.CompressWeightsMode(wc.mode),
        group_size=wc.group_size if wc.mode.startswith("int4") else -1,
        ratio=wc.ratio if wc.mode.startswith("int4") else None, dataset=nncf.Dataset(backend.inputs(items)),
        advanced_parameters=AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST))


def post_training(backend: PostPassBackend, model, items: list[torch.Tensor], recipe: Recipe, family: str,
                  ignored_scope: Optional[nncf.IgnoredScope], log) -> tuple[object, list[Decision], dict]:
    """Reparameterization, ``nncf.quantize`` with the recipe's global settings, the rule post-pass, range tuning and
    weight error correction, each as the recipe asks; returns the quantized model, the decisions (the report) and
    the summaries of the optional steps (``range_tuning``, ``reparameterization``, ``error_correction``)."""
    summaries = {}
    if recipe.reparameterize is not None:  # function-preserving: the reparameterized model is the float reference
        model, summaries["reparameterization"] = backend.reparameterize(model, items, recipe.reparameterize)
        log(f"{recipe.name}: reparameterized {len(summaries['reparameterization']['folded'])} norm outputs per "
            f"channel")
    # with recalibrate the post-pass replaces every quantizer and its range from all items; NNCF's own
    # statistics then only drive fast bias correction (and SmoothQuant), for which a seed set is enough
    seeds = items[:NNCF_SEED_ITEMS] if recipe.recalibrate else items
    quantized = nncf.quantize(model, nncf.Dataset(backend.inputs(seeds)), subset_size=len(seeds),
                              **backend.nncf_kwargs(nncf_kwargs(recipe, ignored_scope)))
    placed = recipe.recalibrate and recipe.placement.active
    rules = (family_rules(family) if recipe.family_rules else placed_rules() if placed else ()) + recipe.rules
    check_scopes(rules, backend.roles)
    defaults = {"weights": recipe.weights, "activations": recipe.activations}
    shared = ()
    if placed:
        plan = placement_plan(backend.roles, backend.sites(quantized), recipe.placement, rules, recipe.activations)
        shared = backend.apply_placement(quantized, plan, recipe.activations)
    decisions = respecify(backend, quantized, rules, defaults, items, recalibrate=recipe.recalibrate, shared=shared)
    backend.align_grids(quantized, decisions)  # before the steps that fit to the quantizers: the final grids
    if recipe.range_tuning is not None:
        summaries["range_tuning"] = backend.tune_ranges(quantized, model, items, recipe, decisions, log)
    if recipe.error_correction is not None:
        # with the fused placement's stream quantizers off: solved on them, the weights fit the 8-bit noise of the
        # residual stream on the calibration items (ResMLP-12 W4A8: -0.32 pt with them on, -0.13 without a correction)
        streams = tuple(d.site for d in stream_decisions(decisions)) if placed else ()
        summaries["error_correction"] = backend.correct_weights(quantized, model, items, recipe.error_correction, log,
                                                                keep_float=streams)
        if placed:
            summaries["error_correction"]["streams_recalibrated"] = recalibrate_streams(backend, quantized, decisions,
                                                                                        items, shared)
    backend.align_grids(quantized, decisions)  # again after range tuning: the model computes what its IR will
    backend.finalize(quantized)
    return quantized, decisions, summaries


def backend_for(model) -> type[PostPassBackend]:
    """The one backend factory: the post-pass backend of ``model`` (an ``openvino.Model`` or a torch module)."""
    if is_openvino_model(model):
        from .openvino_backend import OpenVINOBackend

        return OpenVINOBackend
    from .torch_backend import TorchBackend

    return TorchBackend


@dataclass
class PostTrainingQuantization:
    """A written recipe's post-training quantization of a float model (torch, or an ``openvino.Model``), on the
    backend the model needs (:func:`backend_for`): calibration items from the dataset, then ``nncf.compress_weights``
    for a weight-only recipe or :func:`post_training`. Holds its recipe; :meth:`apply` returns the result."""

    recipe: Recipe
    ignored_scope: Optional[nncf.IgnoredScope] = None
    extra_rules: tuple = ()
    log: Callable[[str], None] = log_line

    def apply(self, model, dataset, subset_size: Optional[int] = None) -> QuantizationResult:
        backend_class = backend_for(model)
        model = backend_class.prepare(model, self.recipe)
        t0 = time.time()
        size = subset_size or self.recipe.calibration_size
        items = calibration_items(dataset, size)
        if len(items) < size:
            self.log(short_data_note(self.recipe.name, len(items), size))
        recipe = self.recipe.with_rules(self.extra_rules)
        weight_only = recipe.weight_compression is not None
        backend, family, is_qmlp = backend_class.bind(model, items, roles=not weight_only)
        if is_qmlp is not None:
            note_unconverted(recipe, family, is_qmlp, self.log)
        summaries: dict = {}
        if weight_only:
            quantized, decisions = compress_weights(backend, model, recipe, items), None
        else:
            check_ignored_scope(self.ignored_scope, backend.roles)
            quantized, decisions, summaries = post_training(backend, model, items, recipe, family, self.ignored_scope,
                                                            self.log)
        return QuantizationResult.of(quantized, decisions, recipe, summaries, time.time() - t0, family, len(items),
                                     log=self.log, model_name=backend.MODEL)
