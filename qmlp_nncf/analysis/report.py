"""Figures (matplotlib, PNG) and the report (``report.md``, and ``report.html`` with the images embedded)."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..quantization.rules.calibration import fake_quantize  # noqa: E402

DPI = 110


def _by_depth(ranges: list[dict], key: str) -> dict[str, dict[int, float]]:
    """group -> {block: max of ``key`` over the group's sites in that block} (activation sites in blocks)."""
    out: dict[str, dict[int, float]] = {}
    for r in ranges:
        if r["block"] is None:
            continue
        g = out.setdefault(r.get("depth_group", r["group"]), {})
        g[r["block"]] = max(g.get(r["block"], 0.0), r[key])
    return out


def range_by_depth(ranges: list[dict], path: Path, title: str, compare: Optional[list[dict]] = None,
                   compare_title: str = "") -> Path:
    """max |x| and p99.99 of |x| per block, one line per role group (dashed: the ``compare`` model)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, label in zip(axes, ("max_abs", "p99.99"), ("max |x|", "p99.99 of |x| (mean per image)")):
        groups = _by_depth(ranges, key)
        other = _by_depth(compare, key) if compare else {}
        names = sorted(set(groups) | set(other))
        for i, g in enumerate(names):
            c = colors[i % len(colors)]
            if g in groups:
                xs = sorted(groups[g])
                ax.plot(xs, [groups[g][x] for x in xs], "-o", color=c, ms=3, label=f"{g}")
            if g in other:
                xs = sorted(other[g])
                ax.plot(xs, [other[g][x] for x in xs], "--s", color=c, ms=3,
                        label=f"{g} ({compare_title})" if g not in groups else None)
        ax.set_yscale("log")
        ax.set_xlabel("block")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    sub = f" (solid), {compare_title} (dashed)" if compare else ""
    fig.suptitle(f"Activation range by depth: {title}{sub}", fontsize=11)
    handles, labels = axes[0].get_legend_handles_labels()
    for h, lab in zip(*axes[1].get_legend_handles_labels()):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05 + 0.035 * math.ceil(len(labels) / 3), 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def sensitivity_ranking(rows: list[dict], path: Path, title: str, top: int = 20) -> Path:
    """Top-1 change (bars) when only this site/group is 4-bit (best of the variants tried) and 8-bit."""
    rows = [r for r in rows if r.get("best4") and r["results"].get(r["best4"])][:top]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.6))
    names = [r["name"] if len(r["name"]) < 60 else "..." + r["name"][-57:] for r in rows]
    y = np.arange(len(rows))
    four = [-(r["results"][r["best4"]]["top1_delta_pt"] or 0.0) for r in rows]
    eight = [-(_eight(r) or {}).get("top1_delta_pt", 0.0) or 0.0 for r in rows]
    ax.barh(y - 0.2, four, 0.4, label="4-bit (best variant)", color="#d62728")
    ax.barh(y + 0.2, eight, 0.4, label="8-bit affine min-max", color="#1f77b4")
    for i, r in enumerate(rows):
        ax.text(max(four[i], 0) + 0.02, i - 0.2, f"{r['best4']}  KL {r['results'][r['best4']]['kl']:.4f}",
                va="center", fontsize=6)
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("top-1 lost (pt) when only this is quantized, held-out train images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _eight(row: dict) -> Optional[dict]:
    return next((m for k, m in row["results"].items() if k[1] == "8" and m), None)


def histograms(tensors: list[dict], path: Path, title: str) -> Path:
    """Histograms (log counts) of sampled values with the 4-bit grid of the chosen spec drawn on them."""
    n = len(tensors)
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 2.9 * rows), squeeze=False)
    for ax, t in zip(axes.flat, tensors):
        v = t["sample"]
        ax.hist(v, bins=200, color="#7f7f7f", log=True)
        low, high, levels = t["low"], t["high"], t["levels"]
        grid = np.linspace(low, high, levels)
        for g in grid:
            ax.axvline(g, color="#d62728", lw=0.6, alpha=0.7)
        ax.axvline(low, color="#d62728", lw=1.6)
        ax.axvline(high, color="#d62728", lw=1.6)
        clipped = float(np.mean((v < low) | (v > high)))
        err = float(np.mean((fake_quantize_np(v, low, high, levels) - v) ** 2))
        ax.set_title(f"{t['name'][-60:]}\n{t['spec']}: [{low:.3g}, {high:.3g}], max|x| {t['max_abs']:.3g}, "
                     f"clipped {100 * clipped:.2f} %, MSE {err:.3g}", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def fake_quantize_np(v: np.ndarray, low: float, high: float, levels: int) -> np.ndarray:
    import torch

    return fake_quantize(torch.from_numpy(v).double(), torch.tensor(low, dtype=torch.float64),
                         torch.tensor(high, dtype=torch.float64), levels).numpy()


def scatter(points: list[dict], path: Path, x: str, xlabel: str, title: str, logx: bool = False) -> Path:
    """Accuracy against ``x`` (size or throughput), one marker per (family, variant)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    markers = {"float": "o", "stock NNCF int8": "v", "Q-MLP int8": "^", "stock 4-bit": "s", "Q-MLP 4-bit": "D"}
    colors = dict(zip(sorted({p["family"] for p in points}), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for p in points:
        if p.get(x) is None or p.get("top1") is None:
            continue
        ax.scatter(p[x], p["top1"], marker=markers.get(p["variant"], "x"), color=colors[p["family"]], s=36)
    for fam, c in colors.items():
        ax.scatter([], [], color=c, label=fam)
    for v, mk in markers.items():
        ax.scatter([], [], marker=mk, color="gray", label=v)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- documents
def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_report(out: Path, title: str, sections: list[dict]) -> tuple[Path, Path]:
    """``sections``: ``{"title", "text" (list of paragraphs), "table" (list of rows, first = header),
    "figure" (a PNG path in ``out``)}``. Writes ``report.md`` (figures linked) and a self-contained
    ``report.html`` (figures embedded)."""
    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        md += [f"## {s['title']}", ""]
        body.append(f"<h2>{html.escape(s['title'])}</h2>")
        for p in s.get("text", []):
            md += [p, ""]
            body.append(f"<p>{html.escape(p)}</p>")
        table = s.get("table")
        if table:
            md.append("| " + " | ".join(map(str, table[0])) + " |")
            md.append("|" + "---|" * len(table[0]))
            md += ["| " + " | ".join(map(str, r)) + " |" for r in table[1:]]
            md.append("")
            body.append("<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in table[0]) + "</tr>" +
                        "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                                for r in table[1:]) + "</table>")
        fig = s.get("figure")
        if fig:
            fig = Path(fig)
            md += [f"![{s['title']}]({fig.name})", ""]
            body.append(f'<img src="{_img(fig)}" alt="{html.escape(fig.name)}" data-file="{html.escape(fig.name)}">')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text("\n".join(md))
    html_path.write_text(page)
    return md_path, html_path
