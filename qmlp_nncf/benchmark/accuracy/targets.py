"""The targets, as data: the ``targets`` object of ``benchmarks/reference_accuracy.json``, beside the
reference numbers (NNCF's conformance harness keeps its reference metrics and tolerances the same way).

Three kinds of check, all on torch fake-quant top-1 in points vs the model's own float top-1 (re-measured on
the same images), on the mean over seeds when a row was measured with several:

- per row (``targets_met``): a recipe's drop, tighter after QAT for the 4-bit recipes; the IR within
  ``ir_vs_torch_pt`` of torch (worst seed);
- margins (``margins``): a Q-MLP recipe on a Q-MLP model vs the stock baseline on its base model;
- claims per family (``claims``): W8A8 drop, the best 4-bit PTQ recipe's drop, the best 4-bit QAT drop, and
  the margin of the best 4-bit Q-MLP result over the stock 4-bit baseline on the base model.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from .models import AccuracyError, BenchModel, is_baseline
from .reference import REFERENCE


@dataclass(frozen=True)
class Targets:
    drop_pt: dict = field(default_factory=dict)  # recipe -> max drop (points)
    qmlp_only: tuple = ()  # recipes whose drop target applies to Q-MLP models only
    qat_drop_pt: dict = field(default_factory=dict)  # recipe -> max drop after QAT
    ir_vs_torch_pt: Optional[float] = None
    baseline_of: dict = field(default_factory=dict)  # Q-MLP recipe -> stock recipe measured on the base model
    auto_baselines: dict = field(default_factory=dict)  # auto recipe -> recipes it must beat
    claims: dict = field(default_factory=dict)  # the per-family claims, see ``claims``
    description: str = ""

    @classmethod
    def from_json(cls, d: dict) -> "Targets":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise AccuracyError(f"unknown target key(s) {unknown}; valid: {sorted(names)}")
        d = dict(d)
        d["qmlp_only"] = tuple(d.get("qmlp_only", ()))
        d["auto_baselines"] = {k: tuple(v) for k, v in d.get("auto_baselines", {}).items()}
        return cls(**d)

    def row_limit(self, recipe: str, mode: str, is_qmlp: bool) -> Optional[float]:
        limit = self.drop_pt.get(recipe)
        if mode == "qat":
            limit = self.qat_drop_pt.get(recipe, limit)
        if limit is not None and recipe in self.qmlp_only and not is_qmlp:
            return None
        return limit


def load_targets(path: str | Path = REFERENCE) -> Targets:
    """The ``targets`` of a reference file (none apply when the file has none)."""
    path = Path(path)
    if not path.is_file():
        return Targets()
    try:
        return Targets.from_json(json.loads(path.read_text()).get("targets", {}))
    except (json.JSONDecodeError, AttributeError, TypeError) as e:
        raise AccuracyError(f"{path}: 'targets' must be a JSON object ({e})") from None


def targets_met(row: dict, model: BenchModel, targets: Optional[Targets] = None) -> Optional[bool]:
    """The targets for this row (drop vs float, tighter after QAT at 4 bit; IR close to torch); None if none
    apply. On a summary row the drop is the mean over seeds and the IR gap the worst seed's."""
    targets = targets or load_targets()
    checks = []
    limit = targets.row_limit(row["recipe"], row["mode"], model.is_qmlp)
    if limit is not None:
        checks.append(row["delta_torch_pt"] >= -limit - 1e-9)
    gap = row.get("ir_vs_torch_pt_worst", row.get("ir_vs_torch_pt"))
    if gap is not None and targets.ir_vs_torch_pt is not None:
        checks.append(abs(gap) <= targets.ir_vs_torch_pt + 1e-9)
    return all(checks) if checks else None


def margins(rows: list[dict], models: list[BenchModel], targets: Optional[Targets] = None) -> list[dict]:
    """Q-MLP recipe on a Q-MLP model vs the stock baseline on its base model (torch top-1, points)."""
    targets = targets or load_targets()
    by = {(r["model"], r["recipe"], r["mode"]): r for r in rows}
    out = []
    for m in models:
        for recipe, baseline in targets.baseline_of.items():
            ours, theirs = by.get((m.name, recipe, "ptq")), by.get((m.base, baseline, "ptq"))
            if m.is_qmlp and ours and theirs:
                out.append({"model": m.name, "recipe": recipe, "base": m.base, "baseline": baseline,
                            "margin_pt": round(100 * (ours["torch_top1"] - theirs["torch_top1"]), 3)})
    return out


def auto_vs_hand(rows: list[dict], targets: Optional[Targets] = None) -> list[dict]:
    """The auto recipe against the best of the hand-written and baseline recipes measured on the same model
    (PTQ, torch top-1): the target is ``margin_pt >= 0``."""
    targets = targets or load_targets()
    by = {(r["model"], r["recipe"]): r for r in rows if r["mode"] == "ptq"}
    out = []
    for (model, recipe), row in by.items():
        others = [by[(model, b)] for b in targets.auto_baselines.get(recipe, ()) if (model, b) in by]
        if others:
            best = max(others, key=lambda r: r["torch_top1"])
            out.append({"model": model, "recipe": recipe, "top1": row["torch_top1"], "best_other": best["recipe"],
                        "best_other_top1": best["torch_top1"], "compared": [r["recipe"] for r in others],
                        "margin_pt": round(100 * (row["torch_top1"] - best["torch_top1"]), 3)})
    return out


def _best(rows: list[dict], model: str, mode: str, pattern: str) -> Optional[dict]:
    mine = [r for r in rows if r["model"] == model and r["mode"] == mode and re.search(pattern, r["recipe"])
            and not is_baseline(r["recipe"]) and not r.get("mismatched")]
    return max(mine, key=lambda r: r["torch_top1"]) if mine else None


def claims(rows: list[dict], floats: list[dict], targets: Optional[Targets] = None) -> list[dict]:
    """The per-family claims on summary ``rows`` (means over seeds), one check each:

    ``w8a8`` (``w8a8_recipe`` drop <= ``w8a8_drop_pt`` on every model that has it), ``best_4bit_ptq`` and
    ``best_4bit_qat`` (the best non-baseline recipe matching ``four_bit`` on each Q-MLP model, drop <= the
    limit), ``margin`` (that best 4-bit PTQ result minus ``margin_baseline`` on the base model >=
    ``margin_min_pt``). A check is ``{family, model, claim, recipe, value_pt, limit_pt, ok}``.
    """
    c = (targets or load_targets()).claims
    if not c:
        return []
    out = []

    def add(f, claim, row, value, limit, ok, **extra):
        out.append({"family": f["family"], "model": f["model"], "claim": claim, "recipe": row["recipe"],
                    "seeds": row.get("seeds", 1), "value_pt": round(value, 3), "limit_pt": limit, "ok": ok, **extra})

    by = {(r["model"], r["recipe"], r["mode"]): r for r in rows}
    for f in floats:
        w8 = by.get((f["model"], c["w8a8_recipe"], "ptq"))
        if w8 is not None and not w8.get("mismatched"):
            add(f, "w8a8", w8, w8["delta_torch_pt"], c["w8a8_drop_pt"], w8["delta_torch_pt"] >= -c["w8a8_drop_pt"] - 1e-9)
        if not f.get("base"):
            continue
        best = _best(rows, f["model"], "ptq", c["four_bit"])
        if best is not None:
            limit = c["best_4bit_ptq_drop_pt"]
            add(f, "best_4bit_ptq", best, best["delta_torch_pt"], limit, best["delta_torch_pt"] >= -limit - 1e-9)
            stock = by.get((f["base"], c["margin_baseline"], "ptq"))
            if stock is not None:
                margin = 100 * (best["torch_top1"] - stock["torch_top1"])
                add(f, "margin", best, margin, c["margin_min_pt"], margin >= c["margin_min_pt"] - 1e-9,
                    baseline=f"{c['margin_baseline']} on {f['base']}")
        qat = _best(rows, f["model"], "qat", c["four_bit"])
        if qat is not None:
            limit = c["best_4bit_qat_drop_pt"]
            add(f, "best_4bit_qat", qat, qat["delta_torch_pt"], limit, qat["delta_torch_pt"] >= -limit - 1e-9)
    return out
