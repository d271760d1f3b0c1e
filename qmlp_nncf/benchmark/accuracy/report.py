"""The report: the accuracy table (mean ± sd over seeds), the targets, margins, claims and notes, in Markdown."""
from __future__ import annotations

from typing import Optional

from .models import is_baseline
from .reference import REFERENCE
from .targets import Targets, load_targets


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _pt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:+.2f}"


def _mean_sd(r: dict, key: str, fmt) -> str:
    value = fmt(r.get(key))
    sd = r.get(f"{key}_sd")
    if r.get("seeds", 1) > 1 and sd is not None and value != "-":
        return f"{value} ± {100 * sd if key.endswith('top1') else sd:.2f}"
    return value


def targets_line(t: Targets) -> str:
    limits = "; ".join(f"{r} {v}" + (f" (QAT {t.qat_drop_pt[r]})" if r in t.qat_drop_pt else "")
                       + (" on Q-MLP models" if r in t.qmlp_only else "") for r, v in t.drop_pt.items())
    line = f"Targets: torch top-1 drop vs float at most (pt): {limits}."
    if t.ir_vs_torch_pt is not None:
        line += f" IR within {t.ir_vs_torch_pt} pt of torch."
    return line


def markdown(result: dict, targets: Optional[Targets] = None) -> str:
    """The accuracy table (top-1 in %, deltas in points; mean ± sd when rows have several seeds), the float
    top-1s, targets, margins, per-family claims and notes."""
    config = result.get("config") or {}
    config = (config[0] or {}) if isinstance(config, list) else config  # a merged result: the first run's
    targets = targets or load_targets(config.get("reference") or REFERENCE)
    floats = {f["model"]: f for f in result["floats"]}
    rows = result.get("summary") or result["rows"]
    lines = ["| model | recipe | mode | calib | seeds | float top-1 (zoo / now) | torch top-1 | Δ pt | IR top-1 | "
             "Δ pt | IR=torch | IR MB | analytic MB | PTQ s | targets |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        f = floats[r["model"]]
        target = ("baseline" if is_baseline(r["recipe"]) else
                  {True: "met", False: "MISSED", None: "-"}[r["targets_met"]])
        lines.append("| " + " | ".join([
            r["model"], r["recipe"] + ("*" if r["mismatched"] else ""), r["mode"], str(r["calibration_size"]),
            str(r.get("seeds", 1)), f"{_pct(f['reference_top1'])} / {_pct(f['top1'])}",
            _mean_sd(r, "torch_top1", _pct), _mean_sd(r, "delta_torch_pt", _pt), _mean_sd(r, "ir_top1", _pct),
            _pt(r.get("delta_ir_pt")), _pct(r.get("agreement")),
            f"{r['ir_mb']:.3f}" if "ir_mb" in r else "-", f"{r['analytic_mb']:.3f}", f"{r['ptq_s']:.1f}",
            target]) + " |")
    n = rows[0]["n"] if rows else 0
    spec = (config.get("data") or {}).get("spec")
    where = f"val images of {spec}" if spec else "Fashion-MNIST test images"
    lines += ["", f"Top-1 in % on the first {n} {where}; Δ vs the float top-1 re-measured on the same images; "
                  f"± = sample sd over the seeds (calibration draw, and QAT); IR = OpenVINO CPU, f32 hint. "
                  f"Float sizes: " + ", ".join(f"{m} {f['analytic_mb']:.3f} MB" for m, f in floats.items()) + "."]
    lines += [targets_line(targets)]
    lines += [f"Margin: {m['recipe']} on {m['model']} vs {m['baseline']} on {m['base']}: {m['margin_pt']:+.2f} pt"
              for m in result["margins"]]
    lines += [f"Auto: {a['recipe']} on {a['model']} {100 * a['top1']:.2f} % vs the best of {len(a['compared'])} "
              f"others ({a['best_other']} {100 * a['best_other_top1']:.2f} %): {a['margin_pt']:+.2f} pt "
              f"({'met' if a['margin_pt'] >= 0 else 'MISSED'})" for a in result.get("auto_vs_hand", [])]
    if result.get("claims"):
        lines += ["", "| family | model | claim | recipe | seeds | value pt | limit pt | |",
                  "|---|---|---|---|---:|---:|---:|---|"]
        for c in result["claims"]:
            sign = ">=" if c["claim"] == "margin" else "drop <="
            lines.append(f"| {c['family']} | {c['model']} | {c['claim']}"
                         + (f" vs {c['baseline']}" if c.get("baseline") else "")
                         + f" | {c['recipe']} | {c['seeds']} | {c['value_pt']:+.2f} | {sign} {c['limit_pt']} | "
                           f"{'met' if c['ok'] else 'MISSED'} |")
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
