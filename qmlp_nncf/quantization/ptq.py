"""Post-training quantization with a recipe: ``nncf.quantize`` (global settings) + the rule post-pass,
or ``nncf.compress_weights`` for weight-only recipes."""
from __future__ import annotations

import difflib
import re
import copy
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

import nncf
import torch
from nncf.common.quantization.structs import QuantizationScheme
from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, AdvancedSmoothQuantParameters,
                                                   OverflowFix, QuantizationParameters)
from nncf.quantization.range_estimator import (AggregatorType, RangeEstimatorParameters,
                                               StatisticsCollectorParameters, StatisticsType)

from ..checkpoint import is_quantized
from ..models.surgery import family_of_module as model_family
from .family_rules import family_rules
from .error_correction import correct_weights
from .range_tuning import tune_ranges
from .reparam import reparameterize
from .recipes import Recipe, _recipe_data, load_recipe
from .placement import plan as placement_plan
from .respec import Decision, apply_placement, quantizer_sites, record_ranges, respecify
from .roles import GraphRoles
from .specs import RangeSpec, SpecError


def items_wanted(recipe, calibration_size: Optional[int] = None) -> int:
    """How many calibration items :func:`quantize` reads for ``recipe`` (a name, ``"auto:..."`` or a
    ``Recipe``): the calibration size, plus ``AUTO_HOLDOUT`` for an ``auto:`` recipe."""
    if isinstance(recipe, str) and recipe.startswith("auto:"):
        return (calibration_size or AUTO_CALIBRATION) + AUTO_HOLDOUT
    return calibration_size or getattr(recipe, "calibration_size", AUTO_CALIBRATION)


def calibration_items(dataset: Iterable, size: int) -> list[torch.Tensor]:
    """The first ``size`` inputs of ``dataset`` as batch-1 tensors. Items may be ``(x, label)`` or ``x``."""
    items = []
    for item in dataset:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"calibration items must be tensors or (tensor, label) pairs, got {type(x).__name__}")
        items.extend(x.split(1) if x.dim() == 4 else [x.unsqueeze(0)])
        if len(items) >= size:
            break
    if not items:
        raise ValueError("the calibration dataset is empty")
    return items[:size]


def short_data_note(recipe: str, have: int, size: int, auto: bool = False) -> str:
    """The one note when the data holds fewer than the ``size`` calibration items ``recipe`` asks for (plus the
    ``AUTO_HOLDOUT`` held-out items of an ``auto:`` search): what runs on the ``have`` there are."""
    if not auto:
        return f"note: {recipe} calibrates on {size} items; the data holds {have}: calibrating on those {have}"
    asks = f"note: {recipe} searches on {size} items and chooses its finish on {AUTO_HOLDOUT} more held out"
    if have > size:
        return f"{asks}; the data holds {have}: the finish is chosen on the {have - size} beyond the search's {size}"
    return (f"{asks}; the data holds {have}: searching on all {have} and choosing the finish on them too "
            f"(give {size + AUTO_HOLDOUT} or more to hold some out)")


def _nncf_range(rng: RangeSpec, symmetric: bool) -> RangeEstimatorParameters:
    if rng.estimator == "percentile":
        p = 1.0 - rng.percentile / 100.0
        low = StatisticsCollectorParameters(StatisticsType.QUANTILE, AggregatorType.MEAN, quantile_outlier_prob=p)
        high = StatisticsCollectorParameters(StatisticsType.ABS_QUANTILE if symmetric else StatisticsType.QUANTILE,
                                             AggregatorType.MEAN, quantile_outlier_prob=p)
        return RangeEstimatorParameters(min=low, max=high)
    agg = AggregatorType.MIN if rng.estimator == "min_max" else AggregatorType.MEAN
    agg_max = AggregatorType.MAX if rng.estimator == "min_max" else AggregatorType.MEAN
    return RangeEstimatorParameters(min=StatisticsCollectorParameters(StatisticsType.MIN, agg),
                                    max=StatisticsCollectorParameters(StatisticsType.MAX, agg_max))


def bound_heap_growth() -> None:
    """Stop glibc from raising its mmap threshold (default 128 KiB, raised dynamically after large frees).

    Otherwise activation buffers land on the heap, NNCF's small per-item mean statistics (MEAN_MINMAX
    ranges, fast bias correction) sit between them, the freed buffers cannot be reused, and peak RSS grows
    by about one forward pass per calibration item (~60 MB per item on mixer_b16_224: 300 items need
    ~20 GB). With a fixed threshold big buffers go to mmap and are returned at once; the quantized model
    is bit-identical. Process-wide and permanent; a no-op where libc has no ``mallopt`` (non-glibc)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


AUTO_CALIBRATION = 300  # calibration items of recipe="auto:..." (ranges and the search objective)
AUTO_HOLDOUT = 256  # further items of recipe="auto:...", unseen by the search, on which its finish is chosen
NNCF_SEED_ITEMS = 64  # calibration items nncf.quantize sees when the post-pass recalibrates every quantizer


def _nncf_kwargs(recipe: Recipe, ignored_scope: Optional[nncf.IgnoredScope]) -> dict:
    s = recipe.nncf
    adv = {}
    if s.model_type == "transformer" and not s.smooth_quant:
        adv["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=-1)
    if s.range is not None:
        adv["activations_range_estimator_params"] = _nncf_range(s.range, recipe.activations.symmetric)
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
    return kw


def _compress_weights(model, recipe: Recipe, items: list[torch.Tensor]):
    """``nncf.compress_weights`` on a copy of ``model`` (a torch module or an ``openvino.Model``)."""
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    from .ov_backend import is_openvino_model

    if is_openvino_model(model):
        model, items = model.clone(), [x.numpy() for x in items]
    else:
        model = copy.deepcopy(model)  # compress_weights works in place
    wc = recipe.weight_compression
    return nncf.compress_weights(
        model, mode=nncf.CompressWeightsMode(wc.mode), group_size=wc.group_size if wc.mode.startswith("int4") else -1,
        ratio=wc.ratio if wc.mode.startswith("int4") else None, dataset=nncf.Dataset(items),
        advanced_parameters=AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST))


@dataclass
class QuantizationResult:
    """What :func:`quantize` returns. ``model``: the NNCF model (a plain torch module with quantizer hooks,
    eval mode; ``nncf.torch.get_config`` / ``ov.convert_model`` work on it), or for an ``openvino.Model`` the
    quantized ``openvino.Model`` (FakeQuantize nodes, compressed weights); ``report``: one dict per
    quantizer (hook, roles, spec, installed and ``calibrated`` range; empty for weight-only recipes);
    ``recipe``: the Recipe that ran; ``range_tuning``: KL before/after, steps and seconds (None without
    tuning); ``seconds``: PTQ wall time; ``family`` and ``calibration_items``."""

    model: object  # torch.nn.Module, or openvino.Model for an OpenVINO input
    report: list[dict]
    recipe: Recipe
    range_tuning: Optional[dict]
    seconds: float
    family: str
    calibration_items: int
    auto: Optional[object] = None  # quantization.auto.AutoResult for recipe="auto:..."
    corrections: dict = field(default_factory=dict)  # reparameterization / error_correction summaries

    @property
    def recipe_name(self) -> str:
        return self.recipe.name

    @property
    def quantizers(self) -> int:
        return sum(not r["float"] for r in self.report)

    def summary(self) -> dict:
        d = {"recipe": self.recipe.name, "family": self.family, "quantizers": self.quantizers,
             "calibration_items": self.calibration_items, "ptq_time_s": round(self.seconds, 2)}
        if self.range_tuning is not None:
            d["range_tuning"] = self.range_tuning
        d.update(self.corrections)
        if self.auto is not None:
            d["auto"] = {"target": self.auto.target, "kl": self.auto.metrics.kl, "seconds": round(self.auto.seconds, 1),
                         "evaluations": self.auto.evaluations, "complete": self.auto.complete,
                         "finish": self.auto.finish}
        return d


def quantize(model: torch.nn.Module, dataset: Iterable, recipe: str | Recipe = "qmlp_w8a8",
             *, config: Optional[str | dict] = None, extra_rules: tuple = (),
             ignored_scope: Optional[nncf.IgnoredScope] = None,
             calibration_size: Optional[int] = None, auto_max_minutes: float = 10.0,
             log=lambda msg: print(msg, file=sys.stderr)) -> QuantizationResult:
    """Quantize ``model`` with a recipe; returns a :class:`QuantizationResult` whose ``model`` is a new
    NNCF model (``model`` is left untouched).

    ``dataset`` yields calibration inputs (``x`` or ``(x, label)``; take them from the *train* split).
    ``config`` (an NNCF-style JSON path or dict, see docs/config.md) replaces ``recipe`` and
    ``ignored_scope`` with what it describes.
    An ``ignored_scope`` name or pattern that matches no op raises ``SpecError``.
    ``recipe="auto:w4a4"`` (``auto:w4a8``, ``auto:w8a8``) first searches the specs for this model on the
    calibration items (``quantization.auto``; at most ``auto_max_minutes``); ``result.auto`` then holds the
    search and ``result.recipe_json`` the recipe, to save and reuse with ``--recipe FILE``.

    ``model`` may also be an ``openvino.Model`` (a float IR with one N x C x H x W input): the same recipes, rules
    and configs then run on NNCF's OpenVINO backend (``ov_backend``), scopes use the IR's node names, and
    ``result.model`` is the quantized ``openvino.Model``. Range tuning and ``auto:`` recipes are torch-only.
    """
    if config is not None:
        from .config import load_config

        cfg = load_config(config)
        recipe, ignored_scope = cfg.recipe, cfg.ignored_scope
    auto = isinstance(recipe, str) and recipe.startswith("auto:")
    if auto:
        from .auto import parse_target

        parse_target(recipe)  # a bad target fails before any work
    else:
        recipe = load_recipe(recipe) if isinstance(recipe, str) else recipe
    from .ov_backend import is_openvino_model

    if is_openvino_model(model):
        return _quantize_openvino(model, dataset, recipe, ignored_scope, extra_rules, calibration_size, log)
    if is_quantized(model):
        raise ValueError("the model already holds NNCF quantizers; quantize its float model (load the float "
                         "checkpoint, or keep the model you passed to quantize() before)")
    model = model.eval()
    bound_heap_growth()
    t0 = time.time()
    size = calibration_size or (AUTO_CALIBRATION if auto else recipe.calibration_size)
    items = calibration_items(dataset, size + (AUTO_HOLDOUT if auto else 0))
    if len(items) < size + (AUTO_HOLDOUT if auto else 0):
        log(short_data_note(recipe if auto else recipe.name, len(items), size, auto))
    items, holdout = items[:size], items[size:]
    search = None
    if auto:
        from .auto import auto_recipe

        log(f"{recipe}: searching the quantizer specs on {len(items)} calibration items "
            f"(at most {auto_max_minutes:g} min)")
        search = auto_recipe(model, items, recipe, max_minutes=auto_max_minutes, log=log)
        recipe = search.recipe
    recipe = recipe.with_rules(tuple(extra_rules))
    family, is_qmlp = model_family(model)
    if recipe.expects_qmlp and not is_qmlp:
        four_bit = recipe.activations.bits == 4 or any(  # 4-bit activations: where an unconverted model suffers
            r.spec.get("bits") == 4 and "weights" not in r.match and r.quantizer_kind != "weights" for r in recipe.rules)
        log(f"note: recipe {recipe.name} is meant for Q-MLP models (LayerNorm, bounded activation, token groups); "
            f"this {family} model has not been converted (see `qmlp convert`)"
            + ("; with 4-bit activations an unconverted model loses most with it (4.9-5.2 pt measured): use "
               "--recipe auto:w4a4 (searched for this model), or `qmlp convert` + `qmlp finetune` first"
               if four_bit else ""))

    tuning = None
    if recipe.weight_compression is not None:
        quantized = _compress_weights(model, recipe, items)
        report: list[dict] = []
    else:
        roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
        _check_ignored_scope(ignored_scope, roles)
        quantized, decisions, tuning = _post_training(model, items, recipe, family, roles, ignored_scope, log)
        if search is not None:
            quantized, decisions, recipe = _auto_finish(model, items, recipe, family, roles, ignored_scope,
                                                        quantized, decisions, search, log, holdout)
        report = [d.to_dict() for d in decisions]
    result = QuantizationResult(quantized.eval(), report, recipe, tuning, time.time() - t0, family, len(items),
                                search, getattr(quantized, "qmlp_corrections", {}))
    log(f"{recipe.name}: quantized {family} model in {result.seconds:.1f} s ({result.quantizers} quantizers)")
    return result


def _quantize_openvino(model, dataset, recipe, ignored_scope, extra_rules, calibration_size, log) -> QuantizationResult:
    """:func:`quantize` for an ``openvino.Model``: NNCF's OpenVINO backend and ``ov_backend``'s post-pass."""
    from . import ov_backend

    if isinstance(recipe, str):  # "auto:..." (a Recipe object is already resolved)
        raise SpecError(f"recipe {recipe}: the auto search runs on the torch model (it switches torch quantizers "
                        f"per site); {ov_backend.TORCH_ONLY}, then reuse its recipe.json with the IR")
    ov_backend.check_recipe(recipe)
    ov_backend.image_input(model)
    if any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()):
        raise ValueError("the IR already holds FakeQuantize nodes (it is quantized); give the float IR")
    bound_heap_growth()
    t0 = time.time()
    size = calibration_size or recipe.calibration_size
    items = calibration_items(dataset, size)
    if len(items) < size:
        log(short_data_note(recipe.name, len(items), size))
    ov_backend.check_items(model, items)
    recipe = recipe.with_rules(tuple(extra_rules))
    roles = ov_backend.graph_roles(model)
    family = ov_backend.family_of_graph(roles)
    _check_ignored_scope(ignored_scope, roles)
    if recipe.weight_compression is not None:
        quantized, report = _compress_weights(model, recipe, items), []
    else:
        quantized, decisions = ov_backend.post_training(model, items, recipe, roles, family, ignored_scope, log)
        report = [d.to_dict() for d in decisions]
    result = QuantizationResult(quantized, report, recipe, None, time.time() - t0, family, len(items))
    log(f"{recipe.name}: quantized the OpenVINO {family} model in {result.seconds:.1f} s "
        f"({result.quantizers} quantizers)")
    return result


def _post_training(model, items, recipe: Recipe, family: str, roles: GraphRoles, ignored_scope, log):
    """``nncf.quantize`` with the recipe's global settings, the rule post-pass, and range tuning."""
    # with recalibrate the post-pass replaces every quantizer and its range from all items; NNCF's own
    # statistics then only drive fast bias correction (and SmoothQuant), for which a seed set is enough
    nncf_items = items[:NNCF_SEED_ITEMS] if recipe.recalibrate else items
    corrections = {}
    if recipe.reparameterize is not None:  # function-preserving: the reparameterized model is the float reference
        model, folds = reparameterize(model, items, recipe.reparameterize, roles)
        corrections["reparameterization"] = folds.to_dict()
        log(f"{recipe.name}: reparameterized {len(folds.folds)} norm outputs per channel")
    quantized = nncf.quantize(model, nncf.Dataset(nncf_items), subset_size=len(nncf_items),
                              **_nncf_kwargs(recipe, ignored_scope))
    rules = (family_rules(family) if recipe.family_rules else ()) + recipe.rules
    _check_scopes(rules, roles)
    defaults = {"weights": recipe.weights, "activations": recipe.activations}
    shared = ()
    if recipe.recalibrate and recipe.placement.active:
        sites = quantizer_sites(quantized, roles)
        shared = apply_placement(quantized, roles, placement_plan(roles, sites, recipe.placement, rules,
                                                                  recipe.activations), recipe.activations)
    decisions = respecify(quantized, roles, rules, defaults, items, recalibrate=recipe.recalibrate, shared=shared)
    tuning = None
    if recipe.range_tuning is not None:
        log(f"{recipe.name}: tuning the quantizer ranges ({recipe.range_tuning.steps} steps on "
            f"{len(items)} calibration items)")
        tuning = tune_ranges(quantized, model, items, recipe.range_tuning, log, roles=roles)
        log(f"{recipe.name}: range tuning took KL to the float model {tuning['kl_before']:.4f} -> "
            f"{tuning['kl_after']:.4f} in {tuning['seconds']:.0f} s")
        record_ranges(quantized, decisions)
    if recipe.error_correction is not None:
        corrections["error_correction"] = correct_weights(quantized, model, items, roles, recipe.error_correction, log)
    quantized.qmlp_corrections = corrections
    return quantized, decisions, tuning


AUTO_CANDIDATES = {"w4a4": ("qmlp_w4a4", "nncf_transformer_w4a4", "plain_w4a4_p999", "plain_w4a4_p9999"),
                   "w4a8": ("qmlp_w4a8",), "w8a8": ("qmlp_w8a8", "nncf_transformer_w8a8")}
AUTO_FINISHES = {"bias correction": {"fast_bias_correction": True},
                 "SmoothQuant + bias correction": {"fast_bias_correction": True, "smooth_quant": True}}


@torch.no_grad()
def _auto_finish(model, items, recipe: Recipe, family, roles, ignored_scope, quantized, decisions, search, log,
                 holdout: Optional[list] = None):
    """The searched specs as they are, with NNCF's fast bias correction, and with SmoothQuant and bias correction
    (which the search cannot see: they change the model around NNCF's initial quantizers), and the written
    recipes of the same budget (``AUTO_CANDIDATES``), all calibrated on ``items``; the one whose outputs are
    closest to the float model's on ``holdout`` (items the search never scored; the search's own items when
    there are none) is kept, and the recipe says which. Held-out items keep the choice from favouring the specs
    the search fitted to its own items."""
    from dataclasses import replace

    from .auto import EVAL_ITEMS
    from .probe import compare

    x = torch.cat(holdout if holdout else items[:EVAL_ITEMS])
    where = "held-out calibration items" if holdout else "the calibration items"
    reference = model(x)
    best = ("as searched", compare(reference, quantized(x)).kl, quantized, decisions, recipe, {})
    kls = {best[0]: best[1]}
    for label, settings in AUTO_FINISHES.items():
        variant = replace(recipe, nncf=replace(recipe.nncf, **settings))
        q, d, _ = _post_training(model, items, variant, family, roles, ignored_scope, log)
        kls[label] = kl = compare(reference, q(x)).kl
        if kl < best[1]:
            best = (label, kl, q, d, variant, settings)
    search.recipe_json["nncf"].update(best[5])
    # the written recipes of the same bit budget are candidates too: the search must not end worse than them
    for name in AUTO_CANDIDATES.get(search.target, ()):
        data = _recipe_data(name, ())[1]
        other = Recipe.from_dict(name, data)
        q, d, _ = _post_training(model, items, other, family, roles, ignored_scope, log)
        kls[name] = kl = compare(reference, q(x)).kl
        if kl < best[1]:
            data["description"] = (f"auto:{search.target} chose the recipe {name} (closest to the float model on "
                                   f"{where} among the searched specs and the written recipes). "
                                   + data.get("description", ""))
            best = (name, kl, q, d, other, {})
            search.recipe_json = data
    search.finish = {"kl": kls, "kept": best[0], "chosen_on": len(x)}
    log(f"{recipe.name}: kept {best[0]} (KL " + ", ".join(f"{k} {v:.5f}" for k, v in kls.items()) + ")")
    search.recipe = best[4]
    return best[2], best[3], best[4]


def finish_auto(model: torch.nn.Module, items: list[torch.Tensor], search, log=lambda m: None) -> None:
    """Run :func:`_auto_finish` for a search made outside :func:`quantize` (``qmlp analyze --suggest-recipe``):
    ``search.recipe`` / ``recipe_json`` then name the finish that was kept."""
    model = model.eval()
    roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
    family, _ = model_family(model)
    quantized, decisions, _ = _post_training(model, items, search.recipe, family, roles, None, log)
    _auto_finish(model, items, search.recipe, family, roles, None, quantized, decisions, search, log)


def _op_examples(names: list[str]) -> str:
    return ", ".join(n for n in names if "/" in n and "linear" in n)[:300]


def _check_scopes(rules, roles: GraphRoles) -> None:
    """A rule with an op-name regex that matches no op is a configuration error."""
    names = [n.node_name for n in roles.graph.get_all_nodes()]
    for rule in rules:
        if rule.scope is not None and not any(re.fullmatch(rule.scope, n) for n in names):
            raise SpecError(f"{rule.where}.scope: regex {rule.scope!r} matches no op of this model; "
                            f"op names look like: {_op_examples(names)}")


def _check_ignored_scope(ignored_scope: Optional[nncf.IgnoredScope], roles: GraphRoles) -> None:
    """An ignored name or pattern (NNCF semantics: ``re.match``) that matches no op is an error.

    Checked here, before ``nncf.quantize``, so that the message names the entry and shows op names.
    """
    if ignored_scope is None or not ignored_scope.validate:
        return
    names = [n.node_name for n in roles.graph.get_all_nodes()]
    for name in ignored_scope.names:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"op names look like: {_op_examples(names)}"
            raise SpecError(f"ignored scope: op {name!r} is not in this model; {hint}")
    for pattern in ignored_scope.patterns:
        if not any(re.match(pattern, n) for n in names):
            raise SpecError(f"ignored scope: pattern {pattern!r} matches no op of this model "
                            f"(matched from the start of the name); op names look like: {_op_examples(names)}")


__all__ = ["quantize", "QuantizationResult", "calibration_items", "Decision"]
