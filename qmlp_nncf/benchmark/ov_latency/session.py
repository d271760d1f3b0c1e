"""A benchmark run: plan the measurements, compile every IR once, measure them in turns, speedups against the float
IR; ``benchmark`` builds the IRs first."""
from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

from ...progress import bar as progress_bar
from .build import build_sources, ir_source
from .device import (compile_ir, error_summary, execution_devices, hint_supported, int8_supported, machine_info,
                     precision_census, resolve_devices)
from .measure import agreement, benchmark_app, measure_latency, measure_throughput, round_stat
from .settings import FP32, BenchConfig, BenchmarkError, IRSource


def plan(sources: list[IRSource], devices: list[str], cfg: BenchConfig, core) -> tuple[list[tuple], list[str]]:
    """(source, device, hint, mode, batch) for every measurement, and notes on skipped hints."""
    items, notes = [], []
    for src in sources:
        for device in devices:
            hints = list(dict.fromkeys(cfg.hints + (["f32"] if src.recipe == FP32 else [])))
            for hint in hints:
                if not hint_supported(core, device, hint):
                    notes.append(f"hint {hint} skipped on {device}: the device does not support it")
                    continue
                items += [(src, device, hint, "latency", 1), (src, device, hint, "throughput", cfg.batch)]
    return items, list(dict.fromkeys(notes))


def add_speedups(rows: list[dict], versus: str = "") -> None:
    """``speedup_vs_fp32`` (and ``speedup_vs_base_fp32`` for qmlp_* models) from this run's f32 float rows,
    ``speedup_vs_fp32_bf16`` against the float IR under the bf16 hint (what OpenVINO runs a float IR in by default
    on CPUs with BF16: the comparison users make there), ``speedup_vs_ref`` against the ``versus`` recipe's row (and
    ``speedup_vs_base_ref`` for qmlp_* models: against that recipe's row of the unconverted base model). A ratio is
    the median of the per-repeat ratios (each
    repeat measures the two IRs back to back), with their range in ``*_range``."""
    def key(r, model=None, recipe=None, hint=None):
        return model or r["model"], recipe or r["recipe"], hint or r["hint"], r["device"], r["mode"], r["batch"]

    by = {key(r): r for r in rows}
    sizes = {r["model"]: r["ir_mb"] for r in rows if r["recipe"] == FP32}
    for r in rows:
        _set_ratio(r, "speedup_vs_fp32", by.get(key(r, recipe=FP32, hint="f32")))
        _set_ratio(r, "speedup_vs_fp32_bf16", by.get(key(r, recipe=FP32, hint="bf16")))
        r["size_vs_fp32"] = round(r["ir_mb"] / sizes[r["model"]], 3) if r["model"] in sizes else None
        if r["model"].startswith("qmlp_"):
            _set_ratio(r, "speedup_vs_base_fp32", by.get(key(r, model=r["model"].removeprefix("qmlp_"), recipe=FP32,
                                                             hint="f32")))
            _set_ratio(r, "speedup_vs_base_fp32_bf16", by.get(key(r, model=r["model"].removeprefix("qmlp_"),
                                                                  recipe=FP32, hint="bf16")))
        if versus:
            _set_ratio(r, "speedup_vs_ref", by.get(key(r, recipe=versus)))
            r["ref_recipe"] = versus
            if r["model"].startswith("qmlp_"):  # against stock int8 of the model the user has, unconverted
                _set_ratio(r, "speedup_vs_base_ref", by.get(key(r, model=r["model"].removeprefix("qmlp_"),
                                                                recipe=versus)))


def _set_ratio(row: dict, name: str, ref: Optional[dict]) -> None:
    row[name] = row[name + "_range"] = None
    if ref is None:
        return
    field_, higher = ("latency_median_ms", False) if row["mode"] == "latency" else ("fps", True)
    mine, theirs = row["runs"][field_], ref["runs"][field_]
    ratios = [(m / t if higher else t / m) for m, t in zip(mine, theirs)]
    row[name] = round(statistics.median(ratios), 3)
    row[name + "_range"] = [round(min(ratios), 3), round(max(ratios), 3)]


def run(sources: list[IRSource], cfg: BenchConfig, progress: bool = True,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
        machine: Optional[dict] = None) -> dict:
    """Measure every source; returns ``{"machine", "config", "notes", "rows", "failures"}``.

    Every model is compiled once; then ``cfg.repeats`` rounds measure each in turn (so that a noisy machine
    slows them alike), and a row holds the median of its rounds (``runs`` keeps each round's numbers).
    A measurement whose model fails to compile is listed in ``failures`` (and ``notes``), not raised."""
    import openvino as ov

    core = ov.Core()
    machine = machine or machine_info()
    devices, notes = resolve_devices(cfg.devices, core.available_devices)
    notes += [f"{d} does not list INT8 in OPTIMIZATION_CAPABILITIES: its int8 IRs run FakeQuantize in float"
              for d in devices if not int8_supported(core, d)]
    items, hint_notes = plan(sources, devices, cfg, core)
    notes += hint_notes + [f"{s.model} / {s.recipe}: {s.note}" for s in sources if "random" in s.note]
    load, cpus = machine["loadavg_1m_at_start"], machine["usable_cpus"]
    if load > 0.5 * cpus:
        notes.append(f"the machine was busy at start (load {load:.1f} on {cpus} CPUs): absolute numbers are "
                     f"pessimistic and noisy; ratios measured side by side are more reliable")
    for n in notes:
        log(f"note: {n}")
    failures, compiled = [], []
    for src, device, hint, mode, batch in items:
        try:
            compiled.append(((src, device, hint, mode, batch), compile_ir(core, src, device, hint, mode, batch)))
        except RuntimeError as e:  # an IR the device refuses is a finding: record it, measure the rest
            failures.append({"model": src.model, "recipe": src.recipe, "device": device, "hint": hint,
                             "mode": mode, "batch": batch, "error": error_summary(e)})
            notes.append(f"{src.model} / {src.recipe} on {device} ({hint}, {mode}, b{batch}) failed to compile: "
                         f"{failures[-1]['error']}")
            log(f"note: {notes[-1]}")
    runs: list[list[dict]] = [[] for _ in compiled]
    bar = progress_bar(total=len(compiled) * cfg.repeats, desc="benchmark", unit="run", disable=not progress)
    checks: list[list[dict]] = [[] for _ in compiled]
    for _ in range(cfg.repeats):
        for i, ((src, device, hint, mode, batch), model) in enumerate(compiled):
            bar.set_postfix_str(f"{src.model}/{src.recipe} {device} {hint} {mode} b{batch}")
            runs[i].append(measure_latency(model, cfg) if mode == "latency" else measure_throughput(model, cfg))
            if cfg.cross_check:
                checks[i].append(benchmark_app(src.xml, device, hint, mode, batch, cfg.duration_s))
            bar.update()
    bar.close()
    rows = []
    for ((src, device, hint, mode, batch), model), stats, check in zip(compiled, runs, checks):
        census = precision_census(model)
        median = {k: statistics.median(s[k] for s in stats) for k in stats[0]}
        rows.append({"model": src.model, "recipe": src.recipe, "device": device, "hint": hint, "mode": mode,
                     "batch": batch, **{k: round_stat(v) for k, v in median.items()},
                     "runs": {k: [round_stat(s[k]) for s in stats] for k in ("latency_median_ms", "fps")},
                     "int8_share": round_stat(census["int8_share"]), "i4_share": round_stat(census["i4_share"]),
                     "gemm_ops": census["gemm_ops"], "census": census["census"],
                     "execution_devices": execution_devices(model),
                     "ir_mb": round(src.xml.with_suffix(".bin").stat().st_size / 2**20, 2), "source": src.note})
        if check:
            rows[-1]["benchmark_app"] = agreement(rows[-1], check)
    del compiled
    add_speedups(rows, cfg.versus)
    return {"machine": machine, "config": asdict(cfg), "notes": notes, "rows": rows, "failures": failures}


def benchmark(irs: list[str], models: list[str], recipes: list[str], cfg: BenchConfig, progress: bool = True,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> dict:
    """IRs from paths, plus models x recipes built into a temporary folder, then :func:`run`."""
    if not irs and not models:
        raise BenchmarkError("nothing to benchmark: give --ir PATH and/or --model NAME")
    if recipes and not models:
        raise BenchmarkError("--recipe applies to --model; an --ir is benchmarked as it is")
    sources = [ir_source(p) for p in irs]
    if cfg.versus and cfg.versus not in recipes + [s.recipe for s in sources]:
        raise BenchmarkError(f"--vs {cfg.versus}: no --recipe or --ir of that recipe is benchmarked; add "
                             f"--recipe {cfg.versus}")
    import openvino as ov

    resolve_devices(cfg.devices, ov.Core().available_devices)  # before the slow part
    machine = machine_info()  # before quantizing on the fly, whose own load is not the machine's
    with tempfile.TemporaryDirectory(prefix="qmlp-ov-latency-") as tmp:
        sources += build_sources(models, recipes, Path(tmp), cfg, log)
        return run(sources, cfg, progress, log, machine)

