"""Accuracy benchmark: every zoo model x every recipe, PTQ top-1 in torch fake-quant and as an OpenVINO IR.

For each model: the float top-1 (zoo reference, and re-measured on the same test images). For each
model x recipe: PTQ wall time, top-1 of the NNCF fake-quant model, top-1 of its exported IR (true
FP32 execution, ``INFERENCE_PRECISION_HINT=f32``) and the torch/IR top-1 agreement, deltas vs float
in points, and the model size (IR ``.bin`` bytes; analytic: weights at their quantized bits, every
other parameter at 32 bit, quantization scales not counted). ``ablate`` removes one rule at a time
from a recipe. Reference numbers live in ``benchmarks/reference_accuracy.json`` (``compare_reference``).
"""
from __future__ import annotations

import copy
import json
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

from ..quantization.qat import QATSettings
from .console import nncf_output_to_stderr
from .ov_latency import machine_info, write_json

REFERENCE = Path(__file__).resolve().parents[2] / "benchmarks" / "reference_accuracy.json"
# Issue targets: max drop vs float (points) of a recipe's torch top-1; the W4A4 ones apply to Q-MLP models only.
TARGET_DROP_PT = {"qmlp_w8a8": 0.1, "qmlp_w8a8_tuned": 0.1, "qmlp_w4a8": 0.3, "qmlp_w4a8_tuned": 0.3,
                  "qmlp_w4a4": 0.5, "qmlp_w4a4_tuned": 0.5}
QMLP_ONLY_TARGETS = {"qmlp_w4a4", "qmlp_w4a4_tuned"}
# After QAT the 4-bit target tightens; other recipes keep their PTQ target after QAT.
TARGET_QAT_DROP_PT = {"qmlp_w4a4": 0.2, "qmlp_w4a4_tuned": 0.2}
TARGET_IR_VS_TORCH_PT = 0.2
# The stock NNCF baseline a Q-MLP recipe is compared with, on the Q-MLP model's base model.
BASELINE_OF = {"qmlp_w8a8": "nncf_transformer_w8a8", "qmlp_w4a4": "nncf_transformer_w4a4",
               "qmlp_w4a4_tuned": "nncf_transformer_w4a4"}

Log = Callable[[str], None]


def is_baseline(recipe: str) -> bool:
    """Stock NNCF and plain-placement recipes: comparison points, not the project's targets."""
    return recipe.startswith(("nncf_", "plain_"))


def _stderr(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


class AccuracyError(ValueError):
    """Bad input (model, recipe, reference file, option); the message says what to change."""


@dataclass(frozen=True)
class BenchModel:
    """A trained model to benchmark: a zoo entry, or any checkpoint of a zoo architecture."""

    name: str
    family: str
    checkpoint: Path
    reference_top1: Optional[float] = None  # float top-1 on the full test set, from the zoo
    base: Optional[str] = None  # Q-MLP models: the base model they were converted from
    source: Optional[object] = None  # a sources.ModelSource (checkpoint/timm weights) instead of the zoo file

    @property
    def is_qmlp(self) -> bool:
        return self.base is not None

    @classmethod
    def from_source(cls, source) -> "BenchModel":
        """Any model source (``--checkpoint``, ``--pretrained-file``, timm name with ``--model-kwargs``)."""
        from ..models.surgery import model_family

        loaded = source.load(float_for="the accuracy benchmark")
        family, is_qmlp = model_family(loaded.model)
        base = loaded.meta.get("base") or (loaded.arch if is_qmlp else None)
        return cls(loaded.arch, family, Path(source.checkpoint or "."), loaded.meta.get("top1"), base, source)

    @classmethod
    def from_zoo(cls, entry) -> "BenchModel":
        return cls(entry.name, entry.family, entry.checkpoint, entry.top1, entry.base)


@dataclass
class AccuracyConfig:
    """What to measure. Empty ``models``/``recipes`` mean every zoo model / every recipe."""

    models: list[str] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    matching_only: bool = False  # skip Q-MLP recipes (expects_qmlp) on models without Q-MLP surgery
    limit: int = 0  # the first N test images; 0 = the full 10k test set
    calibration_size: Optional[int] = None  # None: each recipe's own
    export_ir: bool = True  # also measure the OpenVINO IR
    qat: bool = False  # add a QAT row after each PTQ row (not for weight-only recipes)
    qat_settings: QATSettings = field(default_factory=QATSettings)
    ir_dir: Optional[str] = None  # keep the IRs here (<model>.<recipe>.<ptq|qat>/); default: a temporary folder
    data_dir: Optional[str] = None
    data: dict = field(default_factory=dict)  # sources.DataSource.to_json(); {} = Fashion-MNIST
    progress: bool = True

    def data_source(self):
        from ..sources import DataSource

        return DataSource.from_json(self.data) if self.data else DataSource(data_dir=self.data_dir)

    def __post_init__(self):
        if self.limit < 0:
            raise AccuracyError(f"--limit must be >= 0 (0 = full test set), got {self.limit}")
        if self.calibration_size is not None and self.calibration_size < 1:
            raise AccuracyError(f"--calibration-size must be >= 1, got {self.calibration_size}")


# ---------------------------------------------------------------- models, recipes, plan
def zoo_models(names: list[str], log: Log = _stderr) -> list[BenchModel]:
    """The zoo models called ``names`` (all when empty; those without a checkpoint are skipped with a
    message); an unknown name, or a named model without its checkpoint, fails."""
    from ..zoo import list_entries

    entries = {e.name: e for e in list_entries()}
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise AccuracyError(f"unknown zoo model(s) {unknown}; the zoo has: {', '.join(entries) or 'none yet'}")
    chosen = [entries[n] for n in names] if names else list(entries.values())
    missing = [e.name for e in chosen if not e.checkpoint.is_file()]
    if missing and names:
        raise AccuracyError(f"zoo checkpoint(s) of {missing} are absent ({chosen[0].checkpoint.parent}); "
                            f"train them first (`qmlp train ... --zoo`)")
    if not chosen or len(missing) == len(chosen):
        raise AccuracyError("no zoo checkpoint to benchmark yet; train the zoo models first (`qmlp train ... --zoo`)")
    for name in missing:
        log(f"note: skipping zoo model {name}: its checkpoint is not there yet")
    return [BenchModel.from_zoo(e) for e in chosen if e.checkpoint.is_file()]


def check_recipes(names: list[str]) -> list[str]:
    """``names`` (all recipes when empty); an unknown name fails with the valid ones."""
    from ..quantization import list_recipes

    from ..quantization.auto import TARGETS

    files = list_recipes()
    known = files + [f"auto:{t}" for t in TARGETS]  # auto: recipes run only when named (a search per model)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise AccuracyError(f"unknown recipe(s) {unknown}; choose from {', '.join(known)}")
    return list(dict.fromkeys(names)) if names else files


class _Auto:  # an auto: recipe is searched per model: it fits every model
    expects_qmlp = False
    weight_compression = None
    calibration_size = 300


AUTO_PLACEHOLDER = _Auto()


def mismatched(model: BenchModel, recipe) -> bool:
    """A Q-MLP recipe on a model that has not been through Q-MLP surgery."""
    return recipe.expects_qmlp and not model.is_qmlp


def plan(models: list[BenchModel], recipes: list[str], matching_only: bool) -> list[tuple[BenchModel, str, bool]]:
    """(model, recipe, mismatched) for every run."""
    from ..quantization import load_recipe

    loaded = {r: load_recipe(r) for r in recipes if not r.startswith("auto:")}
    loaded.update({r: AUTO_PLACEHOLDER for r in recipes if r.startswith("auto:")})
    runs = [(m, r, mismatched(m, loaded[r])) for m in models for r in recipes]
    return [run for run in runs if not (matching_only and run[2])]


def test_set(limit: int, data_dir: Optional[str] = None, model: Optional[torch.nn.Module] = None,
             data=None) -> Dataset:
    """The first ``limit`` val images of ``data`` (default Fashion-MNIST test) for ``model``."""
    from ..sources import DataSource, subset

    data = data or DataSource(data_dir=data_dir)
    if model is None:
        from ..data import FashionMNIST

        return subset(FashionMNIST("test", data.data_dir), limit)
    return subset(data.dataset("val", model), limit)


# ---------------------------------------------------------------- sizes
def weight_bits(quantized: torch.nn.Module) -> dict[str, int]:
    """``{parameter name: bits}`` of every quantized weight of an NNCF model.

    Covers ``nncf.quantize`` weight quantizers (pre-hooks on port 1 of a Linear/Conv, named
    ``pre_hooks.<module/path>/<op>/<call>__1.<i>``) and ``nncf.compress_weights`` decompressors
    (``post_hooks.<module:path>:weight__0.<i>``, class ``INT4...``/``INT8...``).
    """
    from nncf.torch.function_hook import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer

    bits = {}
    for name, hook in get_hook_storage(quantized).named_hooks():
        if isinstance(hook, BaseQuantizer):
            m = re.fullmatch(r"pre_hooks\.(?P<op>.+)__1\.\d+", name)
            if m and m["op"].count("/") >= 2:
                bits[".".join(m["op"].split("/")[:-2]) + ".weight"] = int(hook.num_bits)
            continue
        m = re.fullmatch(r"post_hooks\.(?P<param>.+)__0\.\d+", name)
        width = re.match(r"INT(\d+)", type(hook).__name__)
        if m and width:
            bits[m["param"].replace(":", ".")] = int(width[1])
    return bits


def analytic_mb(float_model: torch.nn.Module, bits: dict[str, int]) -> float:
    """Bits x parameters: quantized weights at their bits, every other parameter at 32 bit; in MiB."""
    total = sum(p.numel() * bits.get(name, 32) for name, p in float_model.named_parameters())
    return total / 8 / 2**20


# ---------------------------------------------------------------- measurement
def load_float(model: BenchModel) -> tuple[torch.nn.Module, str]:
    """The float model and its timm architecture name."""
    from ..sources import ModelSource

    loaded = (model.source or ModelSource(checkpoint=str(model.checkpoint))).load()
    return loaded.model.eval(), loaded.arch


def run_qat(quantized: torch.nn.Module, model: BenchModel, arch: str, out_dir: Path, settings: QATSettings,
            data_dir: Optional[str], log: Log, data: Optional[dict] = None) -> torch.nn.Module:
    """Fine-tune a PTQ model in place with ``qmlp_nncf.quantization.qat``, distilling from the float
    checkpoint; the run folder (``last.pth``/``model.pth``) goes to ``out_dir``."""
    from ..quantization.qat import qat

    teacher = model.source.to_json() if model.source is not None else str(model.checkpoint)
    qat(quantized, settings.train_config(arch, str(out_dir), teacher, data_dir=data_dir, data=data or {}), log=log)
    return quantized.eval()


def _round(v):
    return round(v, 5) if isinstance(v, float) else v


def measure_quantized(quantized: torch.nn.Module, float_model: torch.nn.Module, test: Dataset, float_top1: float,
                      ir_dir: Optional[Path] = None, metadata: Optional[dict] = None, progress: bool = False,
                      input_shape: Optional[tuple] = None) -> dict:
    """Torch fake-quant top-1, and (with ``ir_dir``) the IR's top-1, agreement and ``.bin`` size."""
    from ..evaluation import evaluate

    bits = weight_bits(quantized)
    out = {"analytic_mb": analytic_mb(float_model, bits), "quantized_weights": len(bits)}
    if ir_dir is None:
        out["torch_top1"] = evaluate(quantized, test, progress=progress, desc="eval torch")["top1"]
    else:
        from ..export import export_ir, torch_ir_agreement

        from ..sources import model_input_size

        shape = tuple(input_shape or model_input_size(float_model))
        result = export_ir(quantized, ir_dir, (1, *shape), force=True, metadata=metadata)
        m = torch_ir_agreement(quantized, result.xml, test, progress=progress)
        out.update(torch_top1=m["torch_top1"], ir_top1=m["ir_top1"], agreement=m["agreement"],
                   ir_mb=result.bin.stat().st_size / 2**20,
                   delta_ir_pt=100 * (m["ir_top1"] - float_top1), ir_vs_torch_pt=100 * (m["ir_top1"] - m["torch_top1"]))
    out["delta_torch_pt"] = 100 * (out["torch_top1"] - float_top1)
    return out


def targets_met(row: dict, model: BenchModel) -> Optional[bool]:
    """The issue's targets for this row (drop vs float, tighter after QAT at 4 bit; IR within 0.2 pt of
    torch); None if none apply."""
    checks = []
    limit = TARGET_DROP_PT.get(row["recipe"])
    if row["mode"] == "qat":
        limit = TARGET_QAT_DROP_PT.get(row["recipe"], limit)
    if limit is not None and not (row["recipe"] in QMLP_ONLY_TARGETS and not model.is_qmlp):
        checks.append(row["delta_torch_pt"] >= -limit - 1e-9)
    if row.get("ir_vs_torch_pt") is not None:
        checks.append(abs(row["ir_vs_torch_pt"]) <= TARGET_IR_VS_TORCH_PT + 1e-9)
    return all(checks) if checks else None


def run(cfg: AccuracyConfig, models: Optional[list[BenchModel]] = None, log: Log = _stderr) -> dict:
    """Measure every model x recipe of ``cfg``; returns ``{"config", "machine", "notes", "floats", "rows", "margins"}``.

    ``models`` overrides the zoo lookup (e.g. a checkpoint that is not in the zoo yet).
    """
    from tqdm import tqdm

    from ..evaluation import evaluate
    from ..quantization import load_recipe, quantize
    from ..quantization.ptq import items_wanted

    recipes = check_recipes(cfg.recipes)
    models = models if models is not None else zoo_models(cfg.models, log)
    runs = plan(models, recipes, cfg.matching_only)
    machine = machine_info()
    data = cfg.data_source()
    notes = [f"* = recipe {r} expects a Q-MLP model; {m.name} has no Q-MLP surgery"
             for m, r, mis in runs if mis]
    floats: dict[str, dict] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="qmlp-accuracy-") as tmp:
        ir_root = Path(cfg.ir_dir or tmp)
        bar = tqdm(runs, desc="accuracy", unit="run", disable=not cfg.progress, file=sys.stderr)
        for model, recipe_name, mis in bar:
            bar.set_postfix_str(f"{model.name}/{recipe_name}")
            float_model, arch = load_float(model)
            test = test_set(cfg.limit, model=float_model, data=data)
            if model.name not in floats:
                top1 = evaluate(float_model, test, progress=cfg.progress, desc=f"float {model.name}")["top1"]
                floats[model.name] = {"model": model.name, "family": model.family, "base": model.base,
                                      "reference_top1": model.reference_top1, "top1": top1, "n": len(test),
                                      "params": sum(p.numel() for p in float_model.parameters()),
                                      "analytic_mb": analytic_mb(float_model, {})}
            float_top1 = floats[model.name]["top1"]
            recipe = AUTO_PLACEHOLDER if recipe_name.startswith("auto:") else load_recipe(recipe_name)
            size = cfg.calibration_size or recipe.calibration_size
            t0 = time.perf_counter()
            chosen = recipe_name if recipe is AUTO_PLACEHOLDER else recipe
            q = quantize(copy.deepcopy(float_model), data.calibration(float_model, items_wanted(chosen, size)),
                         chosen, calibration_size=size, log=log)
            quantized, recipe = q.model, q.recipe
            base = {"model": model.name, "recipe": recipe_name, "mismatched": mis, "calibration_size": size,
                    "n": len(test), "float_top1_reference": model.reference_top1, "float_top1": float_top1,
                    "ptq_s": time.perf_counter() - t0, "quantizers": q.quantizers}
            modes = [("ptq", quantized, {})]
            if cfg.qat and recipe.weight_compression is None:
                t0 = time.perf_counter()
                trained = run_qat(copy.deepcopy(quantized), model, arch,
                                  ir_root / f"{model.name}.{recipe_name}.qat-run", cfg.qat_settings,
                                  cfg.data_dir, log, cfg.data)
                modes.append(("qat", trained, {"qat_s": time.perf_counter() - t0}))
            for mode, qmodel, extra in modes:
                ir_dir = ir_root / f"{model.name}.{recipe_name}.{mode}" if cfg.export_ir else None
                row = {**base, "mode": mode, **extra, **measure_quantized(
                    qmodel, float_model, test, float_top1, ir_dir, {"model": model.name, "recipe": recipe_name,
                                                                    "mode": mode, "calibration_size": size},
                    cfg.progress, data.input_size(float_model))}
                row["targets_met"] = targets_met(row, model)
                rows.append({k: _round(v) for k, v in row.items()})
                log(f"{model.name} / {recipe_name} ({mode}): torch {row['torch_top1']:.4f}"
                    + (f", IR {row['ir_top1']:.4f}" if "ir_top1" in row else "")
                    + f" (float {float_top1:.4f}), PTQ {row['ptq_s']:.1f} s")
    return {"config": asdict(cfg), "machine": machine, "notes": list(dict.fromkeys(notes)),
            "floats": [{k: _round(v) for k, v in f.items()} for f in floats.values()],
            "rows": rows, "margins": margins(rows, models), "auto_vs_hand": auto_vs_hand(rows)}


def margins(rows: list[dict], models: list[BenchModel]) -> list[dict]:
    """Q-MLP recipe on a Q-MLP model vs the stock baseline on its base model (torch top-1, points)."""
    by = {(r["model"], r["recipe"], r["mode"]): r for r in rows}
    out = []
    for m in models:
        for recipe, baseline in BASELINE_OF.items():
            ours, theirs = by.get((m.name, recipe, "ptq")), by.get((m.base, baseline, "ptq"))
            if m.is_qmlp and ours and theirs:
                out.append({"model": m.name, "recipe": recipe, "base": m.base, "baseline": baseline,
                            "margin_pt": round(100 * (ours["torch_top1"] - theirs["torch_top1"]), 3)})
    return out


AUTO_BASELINES = {"auto:w4a4": ("qmlp_w4a4", "nncf_transformer_w4a4", "plain_w4a4_minmax", "plain_w4a4_p999",
                                 "plain_w4a4_p9999")}


def auto_vs_hand(rows: list[dict]) -> list[dict]:
    """The auto recipe against the best of the hand-written and baseline recipes measured on the same model
    (PTQ, torch top-1): the target is ``margin_pt >= 0``."""
    by = {(r["model"], r["recipe"]): r for r in rows if r["mode"] == "ptq"}
    out = []
    for (model, recipe), row in by.items():
        others = [by[(model, b)] for b in AUTO_BASELINES.get(recipe, ()) if (model, b) in by]
        if others:
            best = max(others, key=lambda r: r["torch_top1"])
            out.append({"model": model, "recipe": recipe, "top1": row["torch_top1"], "best_other": best["recipe"],
                        "best_other_top1": best["torch_top1"], "compared": [r["recipe"] for r in others],
                        "margin_pt": round(100 * (row["torch_top1"] - best["torch_top1"]), 3)})
    return out


# ---------------------------------------------------------------- ablation
def describe_rule(rule) -> str:
    what = "+".join(sorted(rule.match)) or f"scope {rule.scope}"
    return f"{what} -> {'float' if rule.keep_float else json.dumps(rule.spec, separators=(',', ':'))}"


def ablation_variants(recipe, family: str) -> list[tuple[str, object]]:
    """``(label, recipe)``: the full recipe, then the recipe without one rule at a time.

    Family rules are removed by turning ``family_rules`` off and passing the remaining built-in
    rules as recipe rules (same order: built-in first); the last family variant drops them all.
    """
    from ..quantization.family_rules import family_rules

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


def ablate(model: BenchModel, recipe_name: str, cfg: AccuracyConfig, log: Log = _stderr) -> dict:
    """Torch fake-quant top-1 of ``recipe_name`` on ``model`` with one rule removed at a time.

    ``quantizers_changed`` counts the quantizers whose spec (or presence) differs from the full
    recipe's: 0 means the removed rule matched nothing on this model.
    """
    from tqdm import tqdm

    from ..evaluation import evaluate
    from ..quantization import load_recipe, quantize

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
    for label, variant in tqdm(ablation_variants(recipe, model.family), desc="ablation", unit="variant",
                               disable=not cfg.progress, file=sys.stderr):
        t0 = time.perf_counter()
        q = quantize(copy.deepcopy(float_model), calibration, variant, calibration_size=size, log=log)
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
            "n": len(test), "calibration_size": size, "rows": [{k: _round(v) for k, v in r.items()} for r in rows]}


# ---------------------------------------------------------------- reference numbers
def load_reference(path: str | Path = REFERENCE) -> list[dict]:
    """The ``entries`` of a reference file: ``{model, recipe, n, torch_top1, ir_top1, tolerance}``."""
    path = Path(path)
    if not path.is_file():
        raise AccuracyError(f"reference file {path} does not exist")
    try:
        entries = json.loads(path.read_text())["entries"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise AccuracyError(f"{path}: expected a JSON object with an 'entries' list ({e})") from None
    keys = {"model", "recipe", "n", "torch_top1", "ir_top1", "tolerance"}
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not keys <= e.keys():
            raise AccuracyError(f"{path}: entries[{i}] needs the keys {sorted(keys)}")
    return entries


def compare_reference(rows: list[dict], reference: list[dict]) -> list[dict]:
    """One check per reference entry that has a measured PTQ row with the same model, recipe and n.

    A check is ``{model, recipe, n, metric, measured, reference, tolerance, ok}``; the IR metric is
    only checked when the row has one.
    """
    by = {(r["model"], r["recipe"], r["n"]): r for r in rows if r["mode"] == "ptq"}
    checks = []
    for e in reference:
        row = by.get((e["model"], e["recipe"], e["n"]))
        if row is None:
            continue
        for metric in ("torch_top1", "ir_top1"):
            if row.get(metric) is None or e.get(metric) is None:
                continue
            checks.append({"model": e["model"], "recipe": e["recipe"], "n": e["n"], "metric": metric,
                           "measured": row[metric], "reference": e[metric], "tolerance": e["tolerance"],
                           "ok": abs(row[metric] - e[metric]) <= e["tolerance"] + 1e-9})
    return checks


def update_reference(path: str | Path, rows: list[dict], tolerance: float, command: str) -> None:
    """Merge the PTQ rows into the reference file (same model, recipe and n replaced); atomic write."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {
        "description": "Reference top-1 (fractions) of benchmarks/accuracy.py; n = test images (the first n). "
                       "tests/test_accuracy_reference.py checks the n=1000 entries.", "entries": []}
    new = {(r["model"], r["recipe"], r["n"]): {"model": r["model"], "recipe": r["recipe"], "n": r["n"],
                                                "torch_top1": r["torch_top1"], "ir_top1": r.get("ir_top1"),
                                                "tolerance": tolerance, "command": command}
           for r in rows if r["mode"] == "ptq"}
    kept = [e for e in data["entries"] if (e["model"], e["recipe"], e["n"]) not in new]
    data["entries"] = sorted(kept + list(new.values()), key=lambda e: (-e["n"], e["model"], e["recipe"]))
    write_json(path, data)


# ---------------------------------------------------------------- report
def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _pt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:+.2f}"


def markdown(result: dict) -> str:
    """The accuracy table (top-1 in %, deltas in points), the float top-1s, margins and notes."""
    floats = {f["model"]: f for f in result["floats"]}
    lines = ["| model | recipe | mode | calib | float top-1 (zoo / now) | torch top-1 | Δ pt | IR top-1 | Δ pt | "
             "IR=torch | IR MB | analytic MB | PTQ s | targets |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        f = floats[r["model"]]
        target = ("baseline" if is_baseline(r["recipe"]) else
                  {True: "met", False: "MISSED", None: "-"}[r["targets_met"]])
        lines.append("| " + " | ".join([
            r["model"], r["recipe"] + ("*" if r["mismatched"] else ""), r["mode"], str(r["calibration_size"]),
            f"{_pct(f['reference_top1'])} / {_pct(f['top1'])}", _pct(r["torch_top1"]), _pt(r["delta_torch_pt"]),
            _pct(r.get("ir_top1")), _pt(r.get("delta_ir_pt")), _pct(r.get("agreement")),
            f"{r['ir_mb']:.3f}" if "ir_mb" in r else "-", f"{r['analytic_mb']:.3f}", f"{r['ptq_s']:.1f}",
            target]) + " |")
    n = result["rows"][0]["n"] if result["rows"] else 0
    spec = (result.get("config", {}).get("data") or {}).get("spec")
    where = f"val images of {spec}" if spec else "Fashion-MNIST test images"
    lines += ["", f"Top-1 in % on the first {n} {where}; Δ vs the float top-1 re-measured on "
                  f"the same images; IR = OpenVINO CPU, f32 hint. Float sizes: "
                  + ", ".join(f"{m} {f['analytic_mb']:.3f} MB" for m, f in floats.items()) + "."]
    limits = "; ".join(f"{r} {v}" + (f" (QAT {TARGET_QAT_DROP_PT[r]})" if r in TARGET_QAT_DROP_PT else "")
                       + (" on Q-MLP models" if r in QMLP_ONLY_TARGETS else "") for r, v in TARGET_DROP_PT.items())
    lines += [f"Targets: torch top-1 drop vs float at most (pt): {limits}. "
              f"IR within {TARGET_IR_VS_TORCH_PT} pt of torch."]
    lines += [f"Margin: {m['recipe']} on {m['model']} vs {m['baseline']} on {m['base']}: {m['margin_pt']:+.2f} pt"
              for m in result["margins"]]
    lines += [f"Auto: {a['recipe']} on {a['model']} {100 * a['top1']:.2f} % vs the best of {len(a['compared'])} "
              f"others ({a['best_other']} {100 * a['best_other_top1']:.2f} %): {a['margin_pt']:+.2f} pt "
              f"({'met' if a['margin_pt'] >= 0 else 'MISSED'})" for a in result.get("auto_vs_hand", [])]
    lines += [f"Note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def ablation_markdown(result: dict) -> str:
    lines = [f"Ablation of {result['recipe']} on {result['model']} (float {_pct(result['float_top1'])} %, "
             f"first {result['n']} test images, {result['calibration_size']} calibration images)", "",
             "| variant | top-1 | Δ vs float pt | change vs full recipe pt | quantizers changed | PTQ s |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {_pct(r['top1'])} | {_pt(r['delta_vs_float_pt'])} | "
              f"{_pt(r['change_vs_full_pt'])} | {r['quantizers_changed']} | {r['ptq_s']:.1f} |"
              for r in result["rows"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- command line
def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="benchmarks/accuracy.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="zoo model (default: all); with --checkpoint/--pretrained-file/--model-kwargs: the one "
                        "model to benchmark (a timm name)")
    p.add_argument("--checkpoint", help="benchmark this qmlp checkpoint instead of zoo models")
    p.add_argument("--pretrained-file", help="timm weights for the one --model")
    p.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--data", help="fashion-mnist (default) or an ImageFolder root with train/ and val/")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME", help="recipe (default: all)")
    p.add_argument("--matching-only", action="store_true",
                   help="skip Q-MLP recipes (expects_qmlp) on models without Q-MLP surgery")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N test images (default: all 10k)")
    p.add_argument("--calibration-size", type=int, metavar="N", help="calibration images (default: the recipe's)")
    p.add_argument("--no-ir", action="store_true", help="torch fake-quant only, no OpenVINO export")
    p.add_argument("--ir-dir", metavar="DIR", help="keep the exported IRs in DIR (default: a temporary folder)")
    p.add_argument("--qat", action="store_true",
                   help="also fine-tune each PTQ model (qmlp_nncf.quantization.qat, `qmlp qat` defaults)")
    p.add_argument("--qat-epochs", type=int, default=QATSettings.epochs, metavar="N")
    p.add_argument("--qat-train-subset", type=int, default=0, metavar="N",
                   help="QAT on the first N shuffled train images per epoch (default: all 60k)")
    p.add_argument("--ablate", metavar="MODEL", help="ablation: remove one rule at a time from --recipe on MODEL")
    p.add_argument("--check-reference", nargs="?", const=str(REFERENCE), metavar="PATH",
                   help="compare with the reference numbers; exit 1 on a mismatch")
    p.add_argument("--update-reference", nargs="?", const=str(REFERENCE), metavar="PATH",
                   help="write the measured PTQ rows into the reference file")
    p.add_argument("--tolerance", type=float, default=0.003, help="with --update-reference (fraction of top-1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--data-dir", help="Fashion-MNIST folder (default: see qmlp_nncf.data)")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON (atomically)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")  # tracing in ov.convert_model
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.json and Path(args.json).is_dir():
            raise AccuracyError(f"--json {args.json} is a folder; give a file path such as {args.json}/accuracy.json")
        from ..sources import DataSource, ModelSource, parse_model_kwargs

        data = DataSource(spec=args.data, data_dir=args.data_dir).to_json() if args.data else {}
        custom = bool(args.checkpoint or args.pretrained_file or args.model_kwargs)
        if custom and len(args.model) > 1:
            raise AccuracyError("--checkpoint/--pretrained-file/--model-kwargs describe one model: give at most one --model")
        models = [BenchModel.from_source(ModelSource(args.model[0] if args.model else None, args.checkpoint,
                                                     args.pretrained_file, parse_model_kwargs(args.model_kwargs)))
                  ] if custom else None
        cfg = AccuracyConfig(models=[] if custom else args.model, recipes=args.recipe, matching_only=args.matching_only,
                             limit=args.limit, calibration_size=args.calibration_size, export_ir=not args.no_ir,
                             qat=args.qat, ir_dir=args.ir_dir,
                             qat_settings=QATSettings(epochs=args.qat_epochs, train_subset=args.qat_train_subset),
                             data_dir=args.data_dir, data=data, progress=not args.no_progress)
        if args.ablate:
            if len(args.recipe) != 1 or args.model or args.qat or args.check_reference or args.update_reference:
                raise AccuracyError("--ablate MODEL takes exactly one --recipe, and no --model, --qat or "
                                    "--check/--update-reference")
            with nncf_output_to_stderr():
                result = ablate(models[0] if models else zoo_models([args.ablate])[0], args.recipe[0], cfg)
            print(ablation_markdown(result))
        else:
            reference = load_reference(args.check_reference) if args.check_reference else None
            with nncf_output_to_stderr():
                result = run(cfg, models)
            print(markdown(result))
    except (ValueError, FileNotFoundError, KeyError) as e:  # AccuracyError, SpecError, DataError, ExportError...
        print(f"accuracy: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.ablate:
        return 0
    if args.update_reference:
        update_reference(args.update_reference, result["rows"], args.tolerance,
                         "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]))
        print(f"updated {args.update_reference}", file=sys.stderr)
    if reference is not None:
        checks = compare_reference(result["rows"], reference)
        for c in checks:
            print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['model']} / {c['recipe']} n={c['n']} {c['metric']}: "
                  f"{c['measured']:.4f} vs reference {c['reference']:.4f} (tolerance {c['tolerance']})",
                  file=sys.stderr)
        if not checks:
            print("note: no measured row matches a reference entry (model, recipe, n)", file=sys.stderr)
        if not all(c["ok"] for c in checks):
            return 1
    return 0
