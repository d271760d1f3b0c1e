"""The demo's tables and report (``demo/report.html``): what Q-MLP buys first, then the speed, the real runs,
the zoo, the figures and the time each step took. Tables are lists of rows, the first the header."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

REFERENCE_LABEL = "reference (full test set, 3 seeds)"
RANGE_PAIR = ("resmlp_fmnist", "qmlp_resmlp_fmnist")


def variants(family: str) -> list[tuple[str, str, str]]:
    """(label, model, recipe) of the "what it buys" rows of a family: stock recipes on the base model, Q-MLP recipes
    on its Q-MLP model (converted + fine-tuned); the labels are the figures' markers."""
    base, qmlp = f"{family}_fmnist", f"qmlp_{family}_fmnist"
    return [("float", base, "fp32"), ("stock NNCF int8", base, "nncf_transformer_w8a8"),
            ("Q-MLP int8", qmlp, "qmlp_w8a8"), ("no-surgery W4A8", base, "plain_w4a8_ec"),
            ("Q-MLP W4A8", qmlp, "qmlp_w4a8"), ("stock 4-bit", base, "nncf_transformer_w4a4"),
            ("Q-MLP 4-bit", qmlp, "qmlp_w4a4")]


def reference_top1(path=None) -> dict[tuple[str, str], dict]:
    """(model, recipe) -> the 3-seed, full-test-set PTQ entry of the reference file (OpenVINO top-1 mean, sd)."""
    from .benchmark.accuracy.reference import REFERENCE, load_reference

    out = {}
    for e in load_reference(path or REFERENCE):
        if e.get("mode", "ptq") == "ptq" and e.get("seeds", 1) == 3 and e["n"] == 10000:
            out[(e["model"], e["recipe"])] = {"ir_top1": e["ir_top1"], "ir_top1_sd": e.get("ir_top1_sd")}
    return out


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def buys_table(rows: list[dict]) -> list[list[str]]:
    """Per family: top-1, change against the float base model, IR size and its ratio to the float IR."""
    table = [["family", "variant", "model", "recipe", "top-1 %", "vs float (pt)", "IR MB", "IR size vs float",
              "top-1 from"]]
    float_of = {r["family"]: r for r in rows if r["recipe"] == "fp32"}
    for r in rows:
        f = float_of.get(r["family"])
        delta = "-" if f is None or r["top1"] is None or r is f else f"{100 * (r['top1'] - f['top1']):+.2f}"
        ratio = "-" if f is None or r is f else f"{r['ir_mb'] / f['ir_mb']:.2f}x"
        table.append([r["family"], r["variant"], r["model"], r["recipe"], _pct(r["top1"]), delta,
                      f"{r['ir_mb']:.2f}", ratio, r["source"]])
    return table


def runs_table(runs: list[dict]) -> list[list[str]]:
    table = [["family", "model", "recipe", "calibration images", "PTQ s", "export s", "OpenVINO top-1 %",
              "test images", "reference top-1 %"]]
    for r in runs:
        ref = r.get("reference")
        table.append([r["family"], r["model"], r["recipe"], str(r["calibration_items"]), f"{r['ptq_s']:.0f}",
                      f"{r['export_s']:.0f}", _pct(r["ir_top1"]), str(r["n"]),
                      "-" if ref is None else f"{_pct(ref['ir_top1'])} ± {100 * (ref['ir_top1_sd'] or 0):.2f}"])
    return table


def _ratio(row: Optional[dict], name: str) -> str:
    if row is None or row.get(name) is None:
        return "-"
    low, high = row.get(name + "_range") or (row[name], row[name])
    return f"{row[name]:.2f}x [{low:.2f}-{high:.2f}]"


# the three paths of the speed table: (label, which ratios name the reference rows: the qmlp_* model's are its
# base model's)
SPEED_PATHS = (("stock NNCF int8 (the unconverted model)", "nncf_default_w8a8", ""),
               ("no-surgery 4-bit (plain_w4a8_ec, fused placement)", "plain_w4a8_ec", ""),
               ("Q-MLP int8 (converted: qmlp_w8a8)", "qmlp_w8a8", "base_"))


def speed_table(result: dict) -> list[list[str]]:
    """The three paths a user can take, side by side: stock NNCF int8 of the model they have, the no-surgery 4-bit IR
    of the same model, and the converted model's Q-MLP int8 IR; each against that stock int8 IR and against the
    unconverted float IR (f32 hint; bf16 hint where measured): median [range] of the per-repeat ratios, b1 latency and
    bN throughput. Below, each IR's own numbers."""
    rows = result["rows"]
    by = {(r["recipe"], r["hint"], r["mode"]): r for r in rows}
    batch = next((r["batch"] for r in rows if r["mode"] == "throughput"), "N")
    versus = result["config"].get("versus") or "stock"
    table = [["IR", f"b1 vs {versus}", f"b{batch} vs {versus}", "b1 vs float f32", f"b{batch} vs float f32",
              "b1 vs float bf16", f"b{batch} vs float bf16"]]
    for label, recipe, base in SPEED_PATHS:
        lat, thr = by.get((recipe, "f32", "latency")), by.get((recipe, "f32", "throughput"))
        lat16, thr16 = by.get((recipe, "bf16", "latency")), by.get((recipe, "bf16", "throughput"))
        if lat or thr:
            table.append([label, _ratio(lat, f"speedup_vs_{base}ref"), _ratio(thr, f"speedup_vs_{base}ref"),
                          _ratio(lat, f"speedup_vs_{base}fp32"), _ratio(thr, f"speedup_vs_{base}fp32"),
                          _ratio(lat16, f"speedup_vs_{base}fp32_bf16"), _ratio(thr16, f"speedup_vs_{base}fp32_bf16")])
    table.append([""] * 7)
    table.append(["IR (hint)", "b1 latency ms", f"b{batch} img/s", "IR MB", "", "", ""])
    for (recipe, hint, mode), r in by.items():
        if mode == "latency":
            thr = by.get((recipe, hint, "throughput"))
            table.append([f"{r['model']} {recipe} ({hint})", f"{r['latency_median_ms']:.2f}",
                          f"{thr['fps']:.1f}" if thr else "-", f"{r['ir_mb']:.1f}", "", "", ""])
    return table


def speed_notes(result: dict) -> list[str]:
    m = result["machine"]
    flags = ", ".join(f for f, on in m["flags"].items() if on) or "none"
    repeats = result["config"].get("repeats", 1)
    return ([f"Random weights, calibrated on random images: a speed measurement only. Machine: {m['cpu']}, "
             f"{m['usable_cpus']} usable CPUs ({flags}), load {m['loadavg_1m_at_start']} at start, OpenVINO "
             f"{m['openvino']}. {repeats} alternating repeats of {result['config']['duration_s']:g} s per "
             f"measurement: median [min-max] of the per-repeat ratios."]
            + [f"Note: {n}" for n in result["notes"]])


def zoo_table(entries) -> list[list[str]]:
    table = [["model", "family", "params", "epochs", "top-1 % (full test set)"]]
    for e in entries:
        table.append([e.name, e.family, f"{e.params:,}", str(e.epochs), _pct(e.top1)])
    return table


def markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table[1:]])


def points(rows: list[dict]) -> list[dict]:
    """The "what it buys" rows as the size figure's points (top-1 in %)."""
    return [{**r, "top1": 100 * r["top1"]} for r in rows if r["top1"] is not None]


def write(out: Path, rows, runs, latency, ranges_png: Path, cfg, entries, times) -> Path:
    from .analysis import report

    size_png = report.scatter(points(rows), out / "accuracy_vs_size.png", "ir_mb", "OpenVINO IR size (MB)",
                              "Top-1 vs IR size, Fashion-MNIST zoo", logx=True)
    n = cfg.test_images or 10000
    sections = [
        {"title": "What it buys", "table": buys_table(rows),
         "text": ["Per family: the float model, stock NNCF (nncf.quantize, transformer preset) on it, the no-surgery "
                  "4-bit path for a model that cannot be converted (plain_w4a8_ec: 4-bit weights, 8-bit inputs, "
                  "error correction, the fused placement), and Q-MLP (the "
                  "model converted to Q-MLP blocks and fine-tuned, `qmlp convert` + `qmlp finetune`, quantized with "
                  "the qmlp_* recipes), at 8 and 4 bit. On an OpenVINO CPU, W4A8 has W4A4's IR size and speed "
                  "(4-bit activations run on the int8 kernels); W4A4 is for hardware that computes int4 activations. "
                  "Top-1 is OpenVINO's. Rows marked "
                  f"'{REFERENCE_LABEL}' are the numbers of benchmarks/reference_accuracy.json (benchmarks/accuracy.py "
                  "on the 10000 test images, mean of 3 calibration seeds), not re-measured by the demo; 'measured "
                  "here' rows ran below. IR sizes are of IRs exported here."]},
        {"title": f"Speed where int8 matters: {cfg.speed_model} and its Q-MLP conversion",
         "table": speed_table(latency),
         "text": speed_notes(latency)},
        {"title": "Real runs on this machine", "table": runs_table(runs),
         "text": [f"Quantize on {cfg.calibration_size} Fashion-MNIST train images -> export -> OpenVINO top-1 on "
                  f"{'the' if not cfg.test_images else 'the first'} {n} test images, one seed, next to the reference "
                  "where there is one (300 calibration images, 3 seeds, 10000 test images)."]},
        {"title": "Accuracy vs size", "figure": size_png,
         "text": ["The 'what it buys' rows: top-1 against the IR's size on disk."]},
        {"title": "Why: activation ranges by depth", "figure": ranges_png,
         "text": [f"{RANGE_PAIR[0]} (dashed) against its Q-MLP model {RANGE_PAIR[1]} (solid): the remedies "
                  f"(LayerNorm, bounded activation) exist to shrink these ranges. `qmlp analyze --model "
                  f"{RANGE_PAIR[1]} --compare {RANGE_PAIR[0]} --out DIR` gives the full analysis."]},
        {"title": "The zoo", "table": zoo_table(entries)},
        {"title": "Demo time", "table": [["step", "seconds"]] + [[name, f"{t:.0f}"] for name, t in times]
         + [["total (before the report)", f"{sum(t for _, t in times):.0f}"]]},
    ]
    _, html_path = report.write_report(out, "qmlp_nncf demo: what Q-MLP buys", sections)
    return html_path


__all__ = ["variants", "reference_top1", "buys_table", "runs_table", "speed_table", "zoo_table", "markdown",
           "points", "write", "REFERENCE_LABEL", "RANGE_PAIR"]
