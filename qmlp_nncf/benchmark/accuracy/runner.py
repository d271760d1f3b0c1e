"""The runner: every model x recipe (x seed), PTQ (and QAT), torch and IR top-1, then the summary over seeds
and the checks against the targets. Returns one JSON-serialisable result."""
from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ...progress import bar
from ...training.qat import QATSettings
from ..ov_latency import machine_info
from . import targets as T
from .measure import analytic_mb, measure_quantized, run_qat
from .models import (AccuracyError, BenchModel, Log, check_recipes, load_bench_recipe, load_float, plan, stderr_log,
                     test_set, zoo_models)


@dataclass
class AccuracyConfig:
    """What to measure. Empty ``models``/``recipes`` mean every zoo model / every recipe."""

    models: list[str] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    matching_only: bool = False  # skip Q-MLP recipes (expects_qmlp) on models without Q-MLP surgery
    limit: int = 0  # the first N test images; 0 = the full 10k test set
    calibration_size: Optional[int] = None  # None: each recipe's own
    seeds: int = 1  # repeat the calibration draw (and QAT) with seeds 0..N-1; rows are summarised over them
    export_ir: bool = True  # also measure the OpenVINO IR
    qat: bool = False  # add a QAT row after each PTQ row (not for weight-only recipes)
    qat_recipes: list[str] = field(default_factory=list)  # with qat: only after these recipes (empty = all)
    qat_settings: QATSettings = field(default_factory=QATSettings)
    ir_dir: Optional[str] = None  # keep the IRs here (<model>.<recipe>.<ptq|qat>[.seedN]/); default: temporary
    data_dir: Optional[str] = None
    data: dict = field(default_factory=dict)  # sources.DataSource.to_json(); {} = Fashion-MNIST
    reference: Optional[str] = None  # the file whose targets apply (default: benchmarks/reference_accuracy.json)
    rows_file: Optional[str] = None  # every row is appended here (JSON lines) as soon as it is measured
    resume: bool = False  # reuse the rows already in rows_file (same model, recipe, seed, n, calibration size)
    progress: bool = True

    def data_source(self):
        from ...sources import DataSource

        return DataSource.from_json(self.data) if self.data else DataSource(data_dir=self.data_dir)

    def __post_init__(self):
        if self.limit < 0:
            raise AccuracyError(f"--limit must be >= 0 (0 = full test set), got {self.limit}")
        if self.calibration_size is not None and self.calibration_size < 1:
            raise AccuracyError(f"--calibration-size must be >= 1, got {self.calibration_size}")
        if self.seeds < 1:
            raise AccuracyError(f"--seeds must be >= 1, got {self.seeds}")
        if self.resume and not self.rows_file:
            raise AccuracyError("--resume continues the rows of an interrupted --json run: give the same --json PATH")
        stray = [r for r in self.qat_recipes if self.recipes and r not in self.recipes]
        if stray:
            raise AccuracyError(f"--qat-recipe {stray} is not among the --recipe list {self.recipes}")


def rounded(v):
    """A float cut to 5 decimals for the report (anything else as is)."""
    return round(v, 5) if isinstance(v, float) else v


def _done_rows(cfg: AccuracyConfig) -> dict[tuple, list[dict]]:
    """(model, recipe, seed, n, calibration size) -> the rows measured before (``cfg.resume``)."""
    import json

    path = Path(cfg.rows_file) if cfg.rows_file else None
    if path is None or not path.is_file():
        return {}
    if not cfg.resume:
        path.unlink()  # a fresh run: the rows of an earlier one are not this run's
        return {}
    done: dict[tuple, list[dict]] = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the interruption
        done.setdefault((r["model"], r["recipe"], r.get("seed", 0), r["n"], r["calibration_size"]), []).append(r)
    return done


def _append_row(cfg: AccuracyConfig, row: dict) -> None:
    import json

    if cfg.rows_file:
        Path(cfg.rows_file).parent.mkdir(parents=True, exist_ok=True)
        with open(cfg.rows_file, "a") as f:
            f.write(json.dumps(row) + "\n")


def run_dir(root: Path, model: str, recipe: str, mode: str, seed: int) -> Path:
    return root / (f"{model}.{recipe}.{mode}" + (f".seed{seed}" if seed else ""))


def run(cfg: AccuracyConfig, models: Optional[list[BenchModel]] = None, log: Log = stderr_log) -> dict:
    """Measure every model x recipe x seed of ``cfg``.

    Returns ``{"config", "machine", "notes", "floats", "rows", "summary", "margins", "auto_vs_hand", "claims"}``:
    ``rows`` has one entry per seed, ``summary`` one per model x recipe x mode with the mean and sd over
    seeds; the targets (``targets.py``) are checked on the summary. ``models`` overrides the zoo lookup.
    """
    from ...evaluation import evaluate
    from ...quantization import quantize
    from ...quantization.recipes.recipe import items_wanted, resolve_recipe

    targets = T.load_targets(cfg.reference) if cfg.reference else T.load_targets()
    recipes = check_recipes(cfg.recipes)
    models = models if models is not None else zoo_models(cfg.models, log)
    runs = [(m, r, mis, s) for m, r, mis in plan(models, recipes, cfg.matching_only) for s in range(cfg.seeds)]
    data = cfg.data_source()
    notes = [f"* = recipe {r} expects a Q-MLP model; {m.name} has no Q-MLP surgery" for m, r, mis, _ in runs if mis]
    floats: dict[str, dict] = {}
    rows = []
    done = _done_rows(cfg)
    with tempfile.TemporaryDirectory(prefix="qmlp-accuracy-") as tmp:
        ir_root = Path(cfg.ir_dir or tmp)
        steps = bar(runs, desc="accuracy", unit="run", disable=not cfg.progress)
        for model, recipe_name, mis, seed in steps:
            steps.set_postfix_str(f"{model.name}/{recipe_name}" + (f"/seed {seed}" if cfg.seeds > 1 else ""))
            float_model, arch = load_float(model)
            test = test_set(cfg.limit, model=float_model, data=data)
            if model.name not in floats:
                top1 = evaluate(float_model, test, progress=cfg.progress, desc=f"float {model.name}")["top1"]
                floats[model.name] = {"model": model.name, "family": model.family, "base": model.base,
                                      "reference_top1": model.reference_top1, "top1": top1, "n": len(test),
                                      "params": sum(p.numel() for p in float_model.parameters()),
                                      "analytic_mb": analytic_mb(float_model, {})}
            float_top1 = floats[model.name]["top1"]
            recipe = load_bench_recipe(recipe_name)
            size = cfg.calibration_size or recipe.calibration_size
            wants_qat = (cfg.qat and recipe.weight_compression is None
                         and (not cfg.qat_recipes or recipe_name in cfg.qat_recipes))
            before = done.get((model.name, recipe_name, seed, len(test), size), [])
            if {r["mode"] for r in before} == ({"ptq", "qat"} if wants_qat else {"ptq"}):
                rows += before  # measured by the interrupted run
                log(f"{model.name} / {recipe_name} (seed {seed}): reused from {cfg.rows_file}")
                continue
            chosen = resolve_recipe(recipe_name)
            t0 = time.perf_counter()
            q = quantize(copy.deepcopy(float_model), data.calibration(float_model, items_wanted(chosen, size), seed),
                         chosen, subset_size=size, log=log)
            quantized, recipe = q.model, q.recipe
            base = {"model": model.name, "recipe": recipe_name, "mismatched": mis, "calibration_size": size,
                    "seed": seed, "n": len(test), "float_top1_reference": model.reference_top1,
                    "float_top1": float_top1, "ptq_s": time.perf_counter() - t0, "quantizers": q.quantizers}
            modes = [("ptq", quantized, {})]
            if wants_qat:
                t0 = time.perf_counter()
                trained = run_qat(copy.deepcopy(quantized), model, arch,
                                  run_dir(ir_root, model.name, recipe_name, "qat-run", seed), cfg.qat_settings,
                                  cfg.data_dir, log, cfg.data, seed=seed)
                modes.append(("qat", trained, {"qat_s": time.perf_counter() - t0}))
            for mode, qmodel, extra in modes:
                ir_dir = run_dir(ir_root, model.name, recipe_name, mode, seed) if cfg.export_ir else None
                row = {**base, "mode": mode, **extra, **measure_quantized(
                    qmodel, float_model, test, float_top1, ir_dir,
                    {"model": model.name, "recipe": recipe_name, "mode": mode, "calibration_size": size, "seed": seed},
                    cfg.progress, data.input_size(float_model))}
                row["targets_met"] = T.targets_met(row, model, targets)
                rows.append({k: rounded(v) for k, v in row.items()})
                _append_row(cfg, rows[-1])
                log(f"{model.name} / {recipe_name} ({mode}{f', seed {seed}' if cfg.seeds > 1 else ''}): "
                    f"torch {row['torch_top1']:.4f}" + (f", IR {row['ir_top1']:.4f}" if "ir_top1" in row else "")
                    + f" (float {float_top1:.4f}), PTQ {row['ptq_s']:.1f} s")
    float_rows = [{k: rounded(v) for k, v in f.items()} for f in floats.values()]
    return {"config": asdict(cfg), "machine": machine_info(), "notes": list(dict.fromkeys(notes)),
            "floats": float_rows, "rows": rows, **checked(rows, models, float_rows, targets)}


def checked(rows: list[dict], models: list[BenchModel], floats: list[dict], targets: T.Targets) -> dict:
    """The summary over seeds and every check on it: margins, auto vs hand-written, per-family claims."""
    summary = summarize(rows, {m.name: m for m in models}, targets)
    return {"summary": summary, "margins": T.margins(summary, models, targets),
            "auto_vs_hand": T.auto_vs_hand(summary, targets), "claims": T.claims(summary, floats, targets)}


def merge(results: list[dict], targets: Optional[T.Targets] = None) -> dict:
    """One result from several runs of the benchmark (e.g. base and Q-MLP models measured separately, or
    seeds run in parallel): floats of the first run that has each model, per-seed rows (a later run's row
    replaces an earlier one with the same model, recipe, mode and seed), then the summary and checks."""
    if not results:
        raise AccuracyError("nothing to merge: give at least one result JSON")
    targets = targets or T.load_targets()
    floats: dict[str, dict] = {}
    rows: dict[tuple, dict] = {}
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not {"floats", "rows"} <= r.keys():
            raise AccuracyError(f"result {i + 1} is not a JSON result of benchmarks/accuracy.py (no floats/rows)")
        for f in r["floats"]:
            floats.setdefault(f["model"], f)
        for row in r["rows"]:
            rows[(row["model"], row["recipe"], row["mode"], row.get("seed", 0))] = row
    models = [BenchModel(f["model"], f["family"], Path("."), f.get("reference_top1"), f.get("base"))
              for f in floats.values()]
    commands = {(row["model"], row["recipe"], row["mode"]): r["command"]
                for r in results if r.get("command") for row in r["rows"]}
    merged = {"config": [r.get("config") for r in results], "machine": results[0].get("machine"),
              "notes": list(dict.fromkeys(n for r in results for n in r.get("notes", []))),
              "floats": list(floats.values()), "rows": list(rows.values()),
              **checked(list(rows.values()), models, list(floats.values()), targets)}
    for s in merged["summary"]:  # each summary row names the run that measured it (the reference keeps it)
        if (s["model"], s["recipe"], s["mode"]) in commands:
            s["command"] = commands[(s["model"], s["recipe"], s["mode"])]
    return merged


MEANED = ("torch_top1", "ir_top1", "agreement", "delta_torch_pt", "delta_ir_pt", "ir_vs_torch_pt", "ptq_s", "qat_s")


def summarize(rows: list[dict], models: dict[str, BenchModel], targets: Optional[T.Targets] = None) -> list[dict]:
    """One row per model x recipe x mode: the first seed's fields, with ``MEANED`` fields replaced by their
    mean over seeds, ``<field>_sd`` (sample standard deviation, 0 for one seed), ``seeds`` and the worst
    seed's IR gap; ``targets_met`` re-checked on the means."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["recipe"], r["mode"]), []).append(r)
    out = []
    for (model, _, _), group in groups.items():
        s = {k: v for k, v in group[0].items() if k not in ("seed", "targets_met")}
        s["seeds"] = len(group)
        for k in MEANED:
            values = [r[k] for r in group if r.get(k) is not None]
            if values:
                s[k] = rounded(statistics.fmean(values))
                s[f"{k}_sd"] = rounded(statistics.stdev(values)) if len(values) > 1 else 0.0
        gaps = [r["ir_vs_torch_pt"] for r in group if r.get("ir_vs_torch_pt") is not None]
        if gaps:
            s["ir_vs_torch_pt_worst"] = rounded(max(gaps, key=abs))
        bench = models.get(model) or BenchModel(model, "", Path("."))
        s["targets_met"] = T.targets_met(s, bench, targets)
        out.append(s)
    return out
