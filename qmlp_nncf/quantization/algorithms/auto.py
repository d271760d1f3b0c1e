"""``recipe="auto:w4a4"`` (``auto:w4a8``, ``auto:w8a8``): a recipe searched for one model on its calibration data.

The bit budget is fixed by the target and is the hand recipes' budget: ``w4`` = every Linear weight inside the
blocks 4-bit per channel, ``a4`` = every Linear input inside the blocks 4-bit; the patch embedding and the
classifier (weights and inputs) stay 8-bit; tensors that feed no Linear/Conv stay float (NNCF's TRANSFORMER
placement). What the search chooses, per quantizer, is the rest of the spec: symmetric or affine, and the range
estimator (min-max, percentile 99 / 99.9 / 99.99, mse; min-max or mse for weights). Objective: the mean KL
divergence of the quantized model's output from the float model's on the calibration items (no labels are used,
no test data is seen). Search, on a :class:`~.probe.Probe`: the best uniform assignment, then one pass of
coordinate descent per role group, then one per site over the best variants of its group, within
``max_minutes``. The result is an ordinary recipe
(JSON-serialisable, valid input for ``qmlp quantize --recipe FILE``).
"""
from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import nncf
import torch

from ...ir_file import is_openvino_model
from ...progress import log_line
from ..openvino_model import TORCH_ONLY
from ..recipes.knobs import ErrorCorrection, Reparameterization
from ..recipes.recipe import AUTO_HOLDOUT, AutoTarget, Recipe, recipe_data
from ..rules.roles import GraphRoles, Site
from ..rules.ignored_scope import check_ignored_scope
from ..rules.specs import QuantizerSpec, RangeSpec, SpecError
from .common import QuantizationResult, calibration_items, short_data_note
from .postpass.algorithm import post_training
from .postpass.torch_backend import TorchBackend
from .probe import (EDGE_INPUT_ROLES, Metrics, Probe, activation_variants, compare, is_block_weight, is_gemm_input,
                    quantized_by_transformer_placement, site_group, weight_variants)

EDGE_BITS = 8
SITE_CANDIDATES = 3  # per site, the best variants of its role group are tried
# the search stops where it stops paying: after the role groups when they gained less than STAGE_GAIN of the uniform
# stage's KL (the sites then have little left to find), and in the site stage after SITE_PATIENCE evaluations in a
# row that each gained less than STEP_GAIN of the KL (relative)
STAGE_GAIN = 0.05
STEP_GAIN = 0.01
SITE_PATIENCE = 12
EVAL_ITEMS = 256  # calibration items the objective is measured on (recipe="auto:..." in quantize) ...
MIN_EVAL_ITEMS = 64  # ... fewer on a model too slow for EVALUATIONS_WANTED evaluations of EVAL_ITEMS in the budget
EVALUATIONS_WANTED = 30  # enough for the uniform stage and most role groups
QUANTIZED_COST = 2.0  # a fake-quantized forward's time over the float forward's (an upper estimate)
SEARCH_SHARE = 0.5  # of an auto: recipe's time budget, what the search may use (probe set-up included)
AID_COST = 2.0  # a finish with error correction over a plain one (224 px: 1.5x EC, 1.9x RP + EC, docs/results.md)
EIGHT_BIT_EDGE_WEIGHT = QuantizerSpec(8, True, True, RangeSpec("min_max"))


@dataclass
class SearchStep:
    stage: str  # uniform | group | site
    what: str
    spec: str
    kl: float
    kept: bool


@dataclass
class AutoResult:
    """The searched assignment (hook -> spec), its metrics on the probe, the recipe, and the search log."""

    target: str
    config: dict
    metrics: Metrics
    recipe: Recipe
    recipe_json: dict
    steps: list = field(default_factory=list)
    seconds: float = 0.0
    evaluations: int = 0
    complete: bool = True  # False when max_minutes stopped the search early
    finish: Optional[dict] = None  # quantize(): each finish's KL, the kept one, those the time budget left out
    stopped: str = "complete"  # why the search ended: complete | converged (...) | time budget
    census: Optional[dict] = None  # quantize(): float / int8 layers of the kept finish's executed graph, by group


def _eligible(probe: Probe) -> list[Site]:
    return [s for s in probe.sites if quantized_by_transformer_placement(s)]


def _fixed_and_free(probe: Probe, w_bits: int, a_bits: int):
    """Sites with a fixed spec (stem / head) and the free ones with their candidate specs."""
    fixed, free = {}, {}
    for s in _eligible(probe):
        if s.is_weight:
            if is_block_weight(s):
                free[s.hook_name] = weight_variants(w_bits)
            else:
                fixed[s.hook_name] = EIGHT_BIT_EDGE_WEIGHT
        elif is_gemm_input(s):
            free[s.hook_name] = activation_variants(a_bits)
        elif any(r in s.roles for r in EDGE_INPUT_ROLES) or s.consumers:
            free[s.hook_name] = activation_variants(EDGE_BITS)
    return fixed, free


def search(probe: Probe, target: str = "w4a4", max_minutes: float = 10.0,
           log: Callable[[str], None] = lambda m: None) -> AutoResult:
    """Search the specs of ``target`` on ``probe`` (see the module docstring)."""
    w_bits, a_bits = AutoTarget.parse(target).bits
    t0, start_evals = time.time(), probe.evaluations
    deadline = t0 + 60 * max_minutes
    fixed, free = _fixed_and_free(probe, w_bits, a_bits)
    sites = {s.hook_name: s for s in probe.sites}
    steps: list[SearchStep] = []

    def run(cfg):
        return probe.evaluate({**fixed, **cfg})

    # 1. uniform: every free activation the same variant (per bit width), weights mse (then min-max)
    def uniform(act_variant_index: int, weight_estimator: str) -> dict:
        cfg = {}
        for name, cands in free.items():
            if sites[name].is_weight:
                cfg[name] = next(c for c in cands if c.range.estimator == weight_estimator)
            else:
                cfg[name] = cands[act_variant_index]
        return cfg

    n_act = len(activation_variants(a_bits))
    best_cfg, best = None, None
    for i in range(n_act):
        cfg = uniform(i, "mse")
        m = run(cfg)
        kept = best is None or m.kl < best.kl
        steps.append(SearchStep("uniform", "all activations", str(activation_variants(a_bits)[i]), m.kl, kept))
        if kept:
            best_cfg, best = cfg, m
    for est in ("min_max",):
        cfg = {n: (next(c for c in free[n] if c.range.estimator == est) if sites[n].is_weight else s)
               for n, s in best_cfg.items()}
        m = run(cfg)
        kept = m.kl < best.kl
        steps.append(SearchStep("uniform", "all block weights", est, m.kl, kept))
        if kept:
            best_cfg, best = cfg, m
    log(f"auto:{target}: best uniform assignment KL {best.kl:.5f} ({probe.evaluations - start_evals} evaluations)")

    complete = True

    ranking: dict[str, list] = {}  # group -> candidates by their KL in the group stage (best first)

    stale = 0  # evaluations in a row without a gain of STEP_GAIN (site stage)
    stopped = "complete"

    def descend(stage: str, groups: dict[str, list[str]], group_of: Optional[dict] = None) -> bool:
        nonlocal best_cfg, best, stale, stopped
        for what, names in groups.items():
            cands = free[names[0]]
            if group_of is not None:  # sites: only the variants that did best for the whole group
                cands = ranking.get(group_of[what], cands)[:SITE_CANDIDATES]
            tried = []
            for cand in cands:
                if time.time() > deadline:
                    stopped = "time budget"
                    return False
                if group_of is not None and stale >= SITE_PATIENCE:
                    stopped = f"converged: {stale} site evaluations in a row gained < {STEP_GAIN:.0%} each"
                    return True
                if all(best_cfg[n] == cand for n in names):
                    continue
                cfg = {**best_cfg, **{n: cand for n in names}}
                m = run(cfg)
                tried.append((m.kl, cand))
                kept = m.kl < best.kl
                stale = 0 if m.kl < (1 - STEP_GAIN) * best.kl else stale + 1
                steps.append(SearchStep(stage, what, str(cand), m.kl, kept))
                if kept:
                    best_cfg, best = cfg, m
            if group_of is None:
                current = best_cfg[names[0]]
                ranking[what] = [current] + [c for _, c in sorted(tried, key=lambda t: t[0]) if c != current]
        return True

    groups: dict[str, list[str]] = {}
    for name in free:
        bits = free[name][0].bits
        groups.setdefault(f"{site_group(sites[name])} ({bits}-bit)", []).append(name)
    uniform_kl = best.kl
    complete = descend("group", groups)
    log(f"auto:{target}: after role groups KL {best.kl:.5f} ({probe.evaluations - start_evals} evaluations)")
    gain = (uniform_kl - best.kl) / uniform_kl if uniform_kl > 0 else 0.0
    if complete and gain < STAGE_GAIN:
        stopped = f"converged: the role groups gained {gain:.1%} of the uniform KL (< {STAGE_GAIN:.0%}), no site stage"
    elif complete:
        stale = 0
        group_of = {n: g for g, names in groups.items() for n in names}
        complete = descend("site", {n: [n] for n in free}, group_of)
        log(f"auto:{target}: after sites KL {best.kl:.5f} ({probe.evaluations - start_evals} evaluations)")
    if not complete:
        log(f"auto:{target}: stopped by max_minutes={max_minutes} (the best assignment so far is used)")
    elif stopped != "complete":
        log(f"auto:{target}: {stopped}")
    config = {**fixed, **best_cfg}
    recipe_json = recipe_from_config(probe, config, target, best)
    recipe = Recipe.from_dict(f"auto_{target}", recipe_json)
    return AutoResult(target, config, best, recipe, recipe_json, steps, time.time() - t0,
                      probe.evaluations - start_evals, complete, stopped=stopped)


def _scope(site: Site) -> str:
    names = [site.op] if site.is_weight else list(dict.fromkeys((site.op, *site.consumers)))
    return "|".join(re.escape(n) for n in names)


def recipe_from_config(probe: Probe, config: dict, target: str, metrics: Optional[Metrics] = None) -> dict:
    """A recipe JSON object that makes ``qmlp quantize`` install ``config`` (hook -> spec): TRANSFORMER
    placement, no SmoothQuant, no bias correction (so the result is what the probe measured), the most common
    weight and activation specs as defaults, one rule per site that differs from them."""
    sites = {s.hook_name: s for s in probe.sites}
    acts = Counter(s for n, s in config.items() if not sites[n].is_weight)
    weights = Counter(s for n, s in config.items() if sites[n].is_weight)
    act_default = acts.most_common(1)[0][0] if acts else QuantizerSpec(8, False)
    w_default = weights.most_common(1)[0][0] if weights else QuantizerSpec(8, True, True)
    rules = []
    for name, spec in config.items():
        site = sites[name]
        default = w_default if site.is_weight else act_default
        if spec != default:
            rules.append({"scope": _scope(site), "quantizer_kind": "weights" if site.is_weight else "activations",
                          "spec": spec.to_dict(), "comment": site_group(site)})
    kl = f"; KL to the float model on the calibration items {metrics.kl:.5f}" if metrics else ""
    return {
        "description": f"auto:{target}, searched for this model on its calibration data (qmlp_nncf.quantization."
                       f"auto){kl}. Every Linear inside the blocks: {target[:2]} weights, {target[2:]} inputs; "
                       f"stem and classifier 8-bit; the residual stream, the token-mixing outputs and every norm "
                       f"input 8-bit (the fused placement: OpenVINO runs the Transposes, norms and splits in int8).",
        "calibration_size": probe.calibration_items,
        "nncf": {"model_type": "transformer", "smooth_quant": False, "fast_bias_correction": False},
        "placement": "fused",
        "weights": w_default.to_dict(),
        "activations": act_default.to_dict(),
        "rules": rules,
    }


@torch.no_grad()
def eval_items_for(model: torch.nn.Module, items: list[torch.Tensor], seconds: float) -> int:
    """How many items the search scores on: ``EVAL_ITEMS``, fewer (down to ``MIN_EVAL_ITEMS``) where the model is
    too slow for ``EVALUATIONS_WANTED`` evaluations of them in ``seconds`` (224-px models on a laptop CPU)."""
    x = torch.cat(items[:8])
    t0 = time.perf_counter()
    model(x)
    per_item = (time.perf_counter() - t0) / len(x)
    affordable = int(seconds / (EVALUATIONS_WANTED * QUANTIZED_COST * max(per_item, 1e-9)))
    return max(MIN_EVAL_ITEMS, min(EVAL_ITEMS, affordable))


def auto_recipe(model: torch.nn.Module, items: list[torch.Tensor], target: str, max_minutes: float = 10.0,
                log: Callable[[str], None] = lambda m: None) -> AutoResult:
    """Search a recipe for ``model`` on the calibration ``items`` (batch-1 tensors), as ``quantize`` does for
    ``recipe="auto:..."``, within ``max_minutes`` including the probe's set-up."""
    target = AutoTarget.parse(target).target
    t0 = time.time()
    n_eval = eval_items_for(model, items, 60 * max_minutes)
    probe = Probe(model, items, items[:n_eval], None, log=log)
    left = max(0.0, max_minutes - (time.time() - t0) / 60)
    result = search(probe, target, left, log)
    result.seconds = time.time() - t0
    return result


# ---------------------------------------------------------------- the finish (quantize's last step for "auto:...")
# written recipes of the same bit budget, each tried in the fused placement (every finish compared is fusable:
# NNCF's own-range baselines, which cannot take a placement, are not candidates)
AUTO_CANDIDATES = {"w4a4": ("qmlp_w4a4", "plain_w4a4_p999", "plain_w4a4_p9999"),
                   "w4a8": ("qmlp_w4a8",), "w8a8": ("qmlp_w8a8",)}
AUTO_FINISHES = {"bias correction": {"fast_bias_correction": True},
                 "SmoothQuant + bias correction": {"fast_bias_correction": True, "smooth_quant": True}}
_AIDS = {"error correction": {"error_correction": ErrorCorrection()},
         "reparameterization + error correction": {"reparameterize": Reparameterization(),
                                                   "error_correction": ErrorCorrection()}}
AUTO_AIDS = {"w4a4": _AIDS, "w4a8": _AIDS}  # tried on the finish kept, for 4-bit targets


@dataclass(frozen=True)
class Finish:
    """One candidate finish: its label, its KL to the float model, the quantized model with its decisions, the recipe
    that made it, and what it does to the searched recipe's JSON (``nncf`` settings, or a written recipe's JSON)."""

    label: str
    kl: float
    quantized: torch.nn.Module
    decisions: list
    recipe: Recipe
    nncf_settings: dict = field(default_factory=dict)
    recipe_json: Optional[dict] = None
    summaries: dict = field(default_factory=dict)  # post_training's summaries (error correction, ...)

    def json_for(self, search: AutoResult) -> dict:
        """The recipe JSON this finish makes of the search's."""
        return self.recipe_json or {**search.recipe_json, "nncf": {**search.recipe_json["nncf"], **self.nncf_settings}}

    def applied_to(self, search: AutoResult, kls: dict, chosen_on: int, skipped: list) -> AutoResult:
        """``search`` with this finish kept (a new result; ``search`` is left as it is)."""
        return replace(search, recipe=self.recipe, recipe_json=self.json_for(search),
                       finish={"kl": kls, "kept": self.label, "chosen_on": chosen_on, "skipped": skipped})


@torch.no_grad()
def choose_finish(model: torch.nn.Module, items: list[torch.Tensor], search: AutoResult, recipe: Recipe, as_searched: tuple,
           roles: GraphRoles, family: str, ignored_scope=None, holdout: Optional[list] = None,
           log: Callable[[str], None] = lambda m: None, deadline: Optional[float] = None,
           seconds: Optional[float] = None) -> tuple[AutoResult, Finish]:
    """The searched specs as they are (``recipe``: the search's, with any extra rules; ``as_searched``: its quantized
    model, decisions and summaries), with NNCF's fast bias
    correction, and with SmoothQuant and bias correction (which the search cannot see: they change the model around
    NNCF's initial quantizers), and the written recipes of the same budget (``AUTO_CANDIDATES``), all calibrated on
    ``items``; the one whose outputs are closest to the float model's on ``holdout`` (items the search never scored;
    the search's own items when there are none) is kept, and the returned search's recipe says which. Held-out
    items keep the choice from favouring the specs the search fitted to its own items. For a 4-bit target the
    one kept is then tried with weight error correction, and with reparameterization and error correction
    (``AUTO_AIDS``).

    With a ``deadline`` (``time.time()`` seconds), candidates that would end after it are left out, the aids
    last (``seconds``: what the as-searched post-training took, the estimate of a plain candidate's cost; an
    aid costs ``AID_COST`` times that): the result's ``finish["skipped"]`` names them."""
    x = torch.cat(holdout if holdout else items[:EVAL_ITEMS])
    where = "held-out calibration items" if holdout else "the calibration items"
    reference = model(x)
    cost = {"plain": seconds or 0.0}
    skipped: list[str] = []

    def affordable(label: str, estimate: float) -> bool:
        if deadline is None or time.time() + estimate <= deadline:
            return True
        skipped.append(label)
        return False

    def candidate(label: str, variant: Recipe, quantized=None, decisions=None, summaries=None, **kw) -> Finish:
        if quantized is None:
            t0 = time.time()
            quantized, decisions, summaries = post_training(TorchBackend(roles), model, items, variant, family,
                                                            ignored_scope, log)
            if variant.error_correction is None:
                cost["plain"] = time.time() - t0
        return Finish(label, compare(reference, quantized(x)).kl, quantized, decisions, variant,
                      summaries=summaries or {}, **kw)

    aids = AUTO_AIDS.get(search.target, {})

    def reserve() -> float:  # kept back for the aids, which pay most
        return AID_COST * cost["plain"] * len(aids)

    best = candidate("as searched", recipe, *as_searched)
    kls = {best.label: best.kl}
    for label, settings in AUTO_FINISHES.items():
        if affordable(label, cost["plain"] + reserve()):
            c = candidate(label, replace(recipe, nncf=replace(recipe.nncf, **settings)), nncf_settings=settings)
            kls[label] = c.kl
            best = c if c.kl < best.kl else best
    # the written recipes of the same bit budget are candidates too: the search must not end worse than them
    for name in AUTO_CANDIDATES.get(search.target, ()):
        if not affordable(name, cost["plain"] + reserve()):
            continue
        data = {**recipe_data(name), "placement": "fused"}
        c = candidate(name, Recipe.from_dict(name, data))
        kls[name] = c.kl
        if c.kl < best.kl:
            best = replace(c, recipe_json={**data, "description": (
                f"auto:{search.target} chose the recipe {name} (closest to the float model on {where} among the "
                f"searched specs and the written recipes). " + data.get("description", ""))})
    # then the weights of the one kept, re-solved for its quantized inputs (what no spec search can do)
    base = best
    for label, knobs in aids.items():
        if not affordable(f"{base.label} + {label}", AID_COST * cost["plain"]):
            continue
        c = candidate(f"{base.label} + {label}", replace(base.recipe, **knobs), recipe_json={
            **base.json_for(search), **{key: knob.to_value() for key, knob in knobs.items()}})
        kls[c.label] = c.kl
        best = c if c.kl < best.kl else best
    log(f"{recipe.name}: kept {best.label} (KL " + ", ".join(f"{k} {v:.5f}" for k, v in kls.items()) + ")"
        + (f"; the time budget left out {', '.join(skipped)}" if skipped else ""))
    return best.applied_to(search, kls, len(x), skipped), best


def finish_auto(model: torch.nn.Module, items: list[torch.Tensor], search: AutoResult,
                log: Callable[[str], None] = lambda m: None) -> AutoResult:
    """:func:`choose_finish` for a search made outside ``quantize`` (``qmlp analyze --suggest-recipe``): the returned
    search's ``recipe`` / ``recipe_json`` name the finish that was kept."""
    model = model.eval()
    backend, family, _ = TorchBackend.bind(model, items)
    as_searched = post_training(backend, model, items, search.recipe, family, None, log)
    return choose_finish(model, items, search, search.recipe, as_searched, backend.roles, family, log=log)[0]


def auto_quantize(model: torch.nn.Module, items: list[torch.Tensor], holdout: list[torch.Tensor], target: AutoTarget,
                  roles: GraphRoles, family: str, ignored_scope=None, extra_rules: tuple = (),
                  log: Callable[[str], None] = lambda m: None, start: Optional[float] = None) -> tuple[AutoResult, Finish]:
    """The ``auto:`` algorithm, whole: search the specs on ``items`` (``SEARCH_SHARE`` of ``target.max_minutes``),
    post-train the model with the recipe found, then choose its finish on ``holdout`` (:func:`choose_finish`), all
    within ``target.max_minutes`` from ``start``. Returns the search (its recipe is the kept finish's) and the kept
    finish (quantized model, decisions, recipe, summaries)."""
    start = time.time() if start is None else start
    log(f"{target.name}: searching the quantizer specs on {len(items)} calibration items "
        f"(at most {target.max_minutes:g} min, the search {SEARCH_SHARE * target.max_minutes:g} of them)")
    found = auto_recipe(model, items, target.target, max_minutes=SEARCH_SHARE * target.max_minutes, log=log)
    recipe = target.finish(found.recipe).with_rules(tuple(extra_rules))
    t1 = time.time()
    as_searched = post_training(TorchBackend(roles), model, items, recipe, family, ignored_scope, log)
    return choose_finish(model, items, found, recipe, as_searched, roles, family, ignored_scope, holdout, log,
                         deadline=start + 60 * target.max_minutes, seconds=time.time() - t1)


@dataclass
class AutoQuantization:
    """``recipe="auto:..."``: the algorithm that owns the whole of it on a torch model, from its calibration items
    (the search's, and ``AUTO_HOLDOUT`` more held out for the finish) to the kept finish (:func:`auto_quantize`).
    Holds its target; :meth:`apply` returns the result, whose ``auto`` is the search."""

    target: AutoTarget
    ignored_scope: Optional[nncf.IgnoredScope] = None
    extra_rules: tuple = ()
    log: Callable[[str], None] = log_line

    def apply(self, model, dataset, subset_size: Optional[int] = None) -> QuantizationResult:
        if is_openvino_model(model):
            raise SpecError(f"recipe {self.target.name}: the auto search runs on the torch model (it switches torch "
                            f"quantizers per site); {TORCH_ONLY}, then reuse its recipe.json with the IR")
        model = TorchBackend.prepare(model, None)
        t0 = time.time()
        size = subset_size or self.target.calibration_size
        items = calibration_items(dataset, size + AUTO_HOLDOUT)
        if len(items) < size + AUTO_HOLDOUT:
            self.log(short_data_note(self.target.name, len(items), size, auto=True))
        items, holdout = items[:size], items[size:]
        backend, family, _ = TorchBackend.bind(model, items)
        check_ignored_scope(self.ignored_scope, backend.roles)
        search, kept = auto_quantize(model, items, holdout, self.target, backend.roles, family, self.ignored_scope,
                                     self.extra_rules, self.log, start=t0)
        return QuantizationResult.of(kept.quantized, kept.decisions, kept.recipe, kept.summaries, time.time() - t0,
                                     family, len(items), search, log=self.log)
