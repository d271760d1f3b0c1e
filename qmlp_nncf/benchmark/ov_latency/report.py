"""The Markdown table of a benchmark run."""
from __future__ import annotations

from collections import Counter
from typing import Optional

from .settings import GEMM_TYPES


def markdown(result: dict) -> str:
    """One line per model x recipe x device x hint: b1 latency, bN throughput, int8 share, speedups against the f32
    float IR, the bf16 float IR (where it was measured) and the ``versus`` recipe (median of the repeats, with their
    range when there are several)."""
    rows = result["rows"]
    versus = result["config"].get("versus") or ""
    keys = list(dict.fromkeys((r["model"], r["recipe"], r["device"], r["hint"]) for r in rows))
    by = {(r["model"], r["recipe"], r["device"], r["hint"], r["mode"]): r for r in rows}
    batch = next((r["batch"] for r in rows if r["mode"] == "throughput"), "N")
    vs_head = f" vs {versus} b1 | vs {versus} b{batch} |" if versus else ""
    base = any(r.get("speedup_vs_base_ref") is not None for r in rows)  # qmlp_* rows against the unconverted model
    vs_head += f" vs base model's {versus} b1 | vs base model's {versus} b{batch} |" if base else ""
    bf16 = any(r.get("speedup_vs_fp32_bf16") is not None for r in rows)
    bf16_head = f" vs fp32@bf16 b1 | vs fp32@bf16 b{batch} |" if bf16 else ""
    lines = [f"| model | recipe | device | hint | b1 latency ms (p90) | b{batch} img/s | int8 share | "
             f"GEMM runtime precisions | speedup b1 | speedup b{batch} |{bf16_head}{vs_head} IR MB (vs fp32) |",
             "|---|---|---|---|---:|---:|---:|---|---:|---:|" + ("---:|---:|" if bf16 else "")
             + ("---:|---:|" if versus else "") + ("---:|---:|" if base else "") + "---:|"]
    for key in keys:
        lat, thr = by.get((*key, "latency")), by.get((*key, "throughput"))
        any_row = lat or thr
        share = any_row["int8_share"]
        size = f"{any_row['ir_mb']:.1f}" + (f" ({any_row['size_vs_fp32']:.2f}x)" if any_row["size_vs_fp32"] else "")
        vs = [_ratio_cell(lat, "speedup_vs_fp32_bf16"), _ratio_cell(thr, "speedup_vs_fp32_bf16")] if bf16 else []
        vs += [_ratio_cell(lat, "speedup_vs_ref"), _ratio_cell(thr, "speedup_vs_ref")] if versus else []
        vs += [_ratio_cell(lat, "speedup_vs_base_ref"), _ratio_cell(thr, "speedup_vs_base_ref")] if base else []
        lines.append("| " + " | ".join([
            *key,
            f"{lat['latency_median_ms']:.2f} ({lat['latency_p90_ms']:.2f})" if lat else "-",
            f"{thr['fps']:.1f}" if thr else "-",
            f"{share:.0%}" if share is not None else "-",
            _gemm_precisions(any_row["census"]),
            _speedup_cell(lat), _speedup_cell(thr), *vs, size]) + " |")
    m = result["machine"]
    flags = ", ".join(f for f, on in m["flags"].items() if on) or "none"
    repeats = result["config"].get("repeats", 1)
    lines += ["", f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({flags}), load {m['loadavg_1m_at_start']} "
                  f"at start, OpenVINO {m['openvino']}."
              + (f" {repeats} alternating repeats per measurement: median [min-max of the per-repeat ratio]."
                 if repeats > 1 else "")]
    lines += [f"Note: {n}" for n in result["notes"]]
    checked = [r for r in rows if "benchmark_app" in r]
    if checked:
        lines += ["", "Cross-check with OpenVINO's benchmark_app (same IR, device, hints, batch; median of the repeats):",
                  "", "| model | recipe | hint | mode | batch | ours | benchmark_app | ours / benchmark_app |",
                  "|---|---|---|---|---:|---:|---:|---:|"]
        for r in checked:
            b = r["benchmark_app"]
            if r["mode"] == "latency":
                ours, theirs, ratio, unit = r["latency_median_ms"], b["latency_median_ms"], b["latency_ratio"], "ms"
            else:
                ours, theirs, ratio, unit = r["fps"], b["fps"], b["fps_ratio"], "img/s"
            flag = " **(>10 %)**" if abs(ratio - 1) > 0.10 else ""
            lines.append(f"| {r['model']} | {r['recipe']} | {r['hint']} | {r['mode']} | {r['batch']} | "
                         f"{ours:.2f} {unit} | {theirs:.2f} {unit} | {ratio:.3f}{flag} |")
    return "\n".join(lines)


def _gemm_precisions(census: dict) -> str:
    counts: Counter = Counter()
    for layer in GEMM_TYPES:
        counts.update(census.get(layer, {}))
    return " ".join(f"{p}:{n}" for p, n in counts.most_common())


def _ratio_cell(row: Optional[dict], name: str) -> str:
    if row is None or row.get(name) is None:
        return "-"
    spread = row.get(name + "_range")
    cell = f"{row[name]:.2f}x"
    if spread and len(row["runs"]["fps"]) > 1:
        cell += f" [{spread[0]:.2f}-{spread[1]:.2f}]"
    return cell


def _speedup_cell(row: Optional[dict]) -> str:
    cell = _ratio_cell(row, "speedup_vs_fp32")
    if cell != "-" and row.get("speedup_vs_base_fp32") is not None:
        cell += f" ({row['speedup_vs_base_fp32']:.2f}x vs base)"
    return cell

