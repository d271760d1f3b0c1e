"""Ablation: the torch fake-quant top-1 of a recipe with one rule removed at a time."""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, replace

from ...progress import bar
from .models import AccuracyError, BenchModel, Log, check_recipes, load_float, stderr_log, test_set
from .runner import AccuracyConfig, rounded


def describe_rule(rule) -> str:
    what = "+".join(sorted(rule.match)) or f"scope {rule.scope}"
    return f"{what} -> {'float' if rule.keep_float else json.dumps(rule.spec, separators=(',', ':'))}"


def ablation_variants(recipe, family: str) -> list[tuple[str, object]]:
    """``(label, recipe)``: the full recipe, then the recipe without one rule at a time.

    Family rules are removed by turning ``family_rules`` off and passing the remaining built-in
    rules as recipe rules (same order: built-in first); the last family variant drops them all.
    """
    from ...quantization.rules.family_rules import family_rules

    variants = [("full recipe", recipe)]
    if recipe.family_rules:
        built_in = family_rules(family)
        for i, rule in enumerate(built_in):
            variants.append((f"- family rule {describe_rule(rule)}",
                             replace(recipe, family_rules=False, rules=built_in[:i] + built_in[i + 1:] + recipe.rules)))
        variants.append(("- all family rules", replace(recipe, family_rules=False)))
    for i, rule in enumerate(recipe.rules):
        variants.append((f"- recipe rule {describe_rule(rule)}",
                         replace(recipe, rules=recipe.rules[:i] + recipe.rules[i + 1:])))
    return variants


def ablate(model: BenchModel, recipe_name: str, cfg: AccuracyConfig, log: Log = stderr_log) -> dict:
    """Torch fake-quant top-1 of ``recipe_name`` on ``model`` with one rule removed at a time.

    ``quantizers_changed`` counts the quantizers whose spec (or presence) differs from the full
    recipe's: 0 means the removed rule matched nothing on this model.
    """
    from ...evaluation import evaluate
    from ...quantization import load_recipe, quantize

    recipe = load_recipe(check_recipes([recipe_name])[0])
    if recipe.weight_compression is not None:
        raise AccuracyError(f"recipe {recipe_name} is weight-only (nncf.compress_weights): it has no rules to ablate")
    data = cfg.data_source()
    float_model = load_float(model)[0]
    test = test_set(cfg.limit, model=float_model, data=data)
    size = cfg.calibration_size or recipe.calibration_size
    calibration = data.calibration(float_model, size)
    float_top1 = evaluate(float_model, test, progress=cfg.progress, desc="float")["top1"]
    rows, specs = [], []
    for label, variant in bar(ablation_variants(recipe, model.family), desc="ablation", unit="variant",
                              disable=not cfg.progress):
        t0 = time.perf_counter()
        q = quantize(copy.deepcopy(float_model), calibration, variant, subset_size=size, log=log)
        top1 = evaluate(q.model, test, progress=cfg.progress, desc="eval")["top1"]
        rows.append({"variant": label, "top1": top1, "delta_vs_float_pt": 100 * (top1 - float_top1),
                     "ptq_s": time.perf_counter() - t0})
        specs.append({r["hook"]: {k: v for k, v in r.items() if k not in ("low", "high")}
                      for r in q.report})
        log(f"{label}: {top1:.4f}")
    for r, spec in zip(rows, specs):
        r["change_vs_full_pt"] = 100 * (r["top1"] - rows[0]["top1"])
        r["quantizers_changed"] = sum(spec.get(h) != specs[0].get(h) for h in spec.keys() | specs[0].keys())
    return {"config": asdict(cfg), "model": model.name, "recipe": recipe_name, "float_top1": float_top1,
            "n": len(test), "calibration_size": size, "rows": [{k: rounded(v) for k, v in r.items()} for r in rows]}

