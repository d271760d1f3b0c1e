"""``analyze``: the paper's analysis of one model, on its own data.

Ranges at every quantizer site of NNCF's default placement (one pass over train images), sensitivity sweeps
on held-out train images (never the val split), the recipe that follows (``quantization.algorithms.auto``), figures and
a report. With ``compare``, the range statistics of a second model (e.g. the Q-MLP model of a base model)
are drawn beside them.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..atomic import staged_folder, write_json_atomic
from ..progress import log_line
from ..quantization.algorithms.auto import AutoResult, finish_auto, search
from ..quantization.algorithms.probe import Probe, block_of, site_group
from ..quantization.algorithms.reparam import reparameterize
from ..quantization.ptq import calibration_items
from ..quantization.recipes.knobs import Reparameterization
from . import report as rpt
from .sensitivity import Sensitivity, sweep


@dataclass
class Analysis:
    """What :func:`analyze` found. ``ranges``: one dict per activation site (statistics); ``sensitivity``;
    ``suggestion``: the searched recipe (``suggestion.recipe_json``); ``files``: what was written."""

    model: str
    ranges: list
    sensitivity: Optional[Sensitivity]
    suggestion: Optional[AutoResult]
    compare_ranges: Optional[list] = None
    compare_model: Optional[str] = None
    files: dict = field(default_factory=dict)
    seconds: float = 0.0
    float_top1: Optional[float] = None
    reparameterization: Optional[dict] = None  # quantization.algorithms.reparam's per-norm spread before / after folding

    def to_json(self) -> dict:
        d = {"model": self.model, "seconds": round(self.seconds, 1), "float_top1_heldout": self.float_top1,
             "ranges": self.ranges, "files": {k: str(v) for k, v in self.files.items()}}
        if self.sensitivity is not None:
            d["sensitivity"] = self.sensitivity.to_dict()
        if self.suggestion is not None:
            d["suggestion"] = {"target": self.suggestion.target, "heldout": self.suggestion.metrics.to_dict(),
                               "recipe": self.suggestion.recipe_json, "seconds": round(self.suggestion.seconds, 1),
                               "evaluations": self.suggestion.evaluations, "complete": self.suggestion.complete}
        if self.reparameterization is not None:
            d["reparameterization"] = self.reparameterization
        if self.compare_ranges is not None:
            d["compare"] = {"model": self.compare_model, "ranges": self.compare_ranges}
        return d


def site_ranges(probe: Probe) -> list[dict]:
    """One dict per activation site: hook, group, roles, block, and the statistics of ``SiteStats.summary``."""
    rows = []
    for s in probe.sites:
        if s.is_weight:
            continue
        st = probe.stats[s.hook_name].summary()
        # the figure pairs a base model with its Q-MLP model: ResMLP's Affine and Q-MLP's LayerNorm are both norms
        depth_group = "+".join(sorted(s.roles - {"affine_output"})) or "other"
        rows.append({"name": s.hook_name, "group": site_group(s), "depth_group": depth_group,
                     "roles": sorted(s.roles), "block": block_of(s),
                     "max_abs": max(abs(st["min"]), abs(st["max"])), **st})
    return rows


def _items(dataset, order: list[int], start: int, size: int):
    xs, ys = [], []
    for i in order[start:start + size]:
        x, y = dataset[i]
        xs.append(x.unsqueeze(0))
        ys.append(int(y))
    return xs, torch.tensor(ys)


def build_probe(model: torch.nn.Module, data, calibration_size: int, eval_size: int, seed: int,
                log: Callable) -> Probe:
    """A probe calibrated on ``calibration_size`` train images and evaluated on the next ``eval_size``
    (disjoint, same seeded order as ``DataSource.calibration``)."""
    train = data.dataset("train", model)
    if calibration_size + eval_size > len(train):
        raise ValueError(f"the train split has {len(train)} images; --calibration-size {calibration_size} plus "
                         f"--eval-size {eval_size} must fit in it")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    calib, _ = _items(train, order, 0, calibration_size)
    xs, ys = _items(train, order, calibration_size, eval_size) if eval_size else (calib[:1], None)
    return Probe(model, calib, xs, ys if eval_size else None, log=log)


def analyze(model: torch.nn.Module, data, out: Optional[str | Path] = None, *, name: str = "model",
            compare: Optional[torch.nn.Module] = None, compare_name: str = "compare",
            calibration_size: int = 300, eval_size: int = 500, seed: int = 0, max_minutes: float = 20.0,
            per_site: bool = True, suggest: Optional[str] = "w4a4", suggest_path: Optional[str | Path] = None,
            log: Callable[[str], None] = log_line) -> Analysis:
    """Analyse ``model`` (float, eval mode) on ``data`` (a ``sources.DataSource``); writes the figures and
    ``report.html`` / ``report.md`` / ``analysis.json`` into ``out`` (atomically) when given, and the suggested
    recipe to ``suggest_path``. ``max_minutes`` bounds the sensitivity sweeps and the recipe search (half each
    when both run)."""
    if calibration_size < 1 or eval_size < 1:
        raise ValueError("--calibration-size and --eval-size must be >= 1")
    if max_minutes <= 0:
        raise ValueError(f"--max-minutes must be > 0, got {max_minutes}")
    if suggest_path is not None and suggest is None:
        raise ValueError("suggest_path needs a target (suggest='w4a4', 'w4a8' or 'w8a8')")
    t0 = time.time()
    model = model.eval()
    probe = build_probe(model, data, calibration_size, eval_size, seed, log)
    ranges = site_ranges(probe)
    calib = calibration_items(data.calibration(model, calibration_size, seed), calibration_size)  # the probe's images
    folds = reparameterize(model, calib, Reparameterization(), probe.roles)[1].to_dict()
    share = max_minutes / 2 if suggest else max_minutes
    log(f"analyze {name}: sensitivity sweeps (at most {share:g} min)")
    sens = sweep(probe, share, per_site=per_site, log=log)
    suggestion = None
    if suggest:
        log(f"analyze {name}: searching the auto:{suggest} recipe (at most {share:g} min)")
        suggestion = search(probe, suggest, share, log)
        suggestion = finish_auto(model, calib, suggestion, log)
    compare_ranges = None
    if compare is not None:
        log(f"analyze {name}: range statistics of {compare_name}")
        compare_ranges = site_ranges(build_probe(compare.eval(), data, calibration_size, 0, seed, log))
    result = Analysis(name, ranges, sens, suggestion, compare_ranges, compare_name if compare is not None else None,
                      float_top1=probe.float_top1, reparameterization=folds)
    if suggest_path is not None:
        result.files["recipe"] = write_json_atomic(suggest_path, suggestion.recipe_json)
    result.seconds = time.time() - t0
    if out is not None:
        target = Path(out)
        with staged_folder(target) as tmp:
            files = write_analysis(result, probe, tmp)
        result.files.update({k: target / Path(v).name for k, v in files.items()})
    log(f"analyze {name}: done in {result.seconds:.0f} s" + (f", report in {out}/report.html" if out else ""))
    return result


# ---------------------------------------------------------------- the report
def _fmt(x, nd=3) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.{nd}g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def _pt(m: Optional[dict]) -> str:
    return "" if not m or m.get("top1_delta_pt") is None else f"{m['top1_delta_pt']:+.2f}"


def _db(m: Optional[dict]) -> str:
    return "" if not m else ("exact" if m["sqnr_db"] is None else f"{m['sqnr_db']:.1f}")


def _worst_tensors(result: Analysis, probe: Probe, k: int = 6) -> list[dict]:
    """The activation sites that cost most at 4 bit alone, with the grid of the spec they would get."""
    from ..quantization.rules.specs import QuantizerSpec, RangeSpec

    rows = [r for r in result.sensitivity.sites if not r.is_weight and r.best4] if result.sensitivity else []
    names = [r.name for r in rows[:k]] or [r["name"] for r in sorted(result.ranges, key=lambda r: -r["max_to_p99.99"])[:k]]
    chosen = result.suggestion.config if result.suggestion else {}
    out = []
    for n in names:
        site = probe.site(n)
        spec = chosen.get(n)
        if spec is None or spec.bits != 4:
            best = next((r.best4 for r in rows if r.name == n), None)
            spec = next((s for s in _variants() if str(s) == best), QuantizerSpec(4, False, False, RangeSpec("min_max")))
        low, high = probe.range(site, spec)
        stats = probe.stats[n]
        out.append({"name": n, "sample": stats.sample().numpy(), "low": low[0], "high": high[0], "levels": spec.levels,
                    "spec": str(spec), "max_abs": max(abs(min(stats.mins)), abs(max(stats.maxs)))})
    return out


def _variants():
    from .sensitivity import GROUP_ACT_VARIANTS, SITE_ACT_VARIANTS

    return SITE_ACT_VARIANTS + GROUP_ACT_VARIANTS


def write_analysis(result: Analysis, probe: Probe, out: Path) -> dict:
    files = {"json": out / "analysis.json"}
    files["json"].write_text(json.dumps(result.to_json(), indent=1, default=str))
    title = result.model
    files["ranges"] = rpt.range_by_depth(result.ranges, out / "range_by_depth.png", title, result.compare_ranges,
                                         result.compare_model or "")
    sens = result.sensitivity
    sections = [_summary_section(result)]
    sections.append({"title": "Activation range by depth", "figure": files["ranges"],
                     "text": _range_findings(result)})
    if sens is not None:
        files["groups"] = rpt.sensitivity_ranking([r.to_dict() for r in sens.groups], out / "sensitivity_groups.png",
                                                  f"{title}: role groups, only that group quantized")
        sections.append(_group_section(result, files["groups"]))
        if sens.sites:
            files["sites"] = rpt.sensitivity_ranking([r.to_dict() for r in sens.sites],
                                                     out / "sensitivity_sites.png",
                                                     f"{title}: the 20 most sensitive sites, only that site quantized")
            sections.append(_site_section(result, files["sites"]))
    worst = _worst_tensors(result, probe)
    if worst:
        files["histograms"] = rpt.histograms(worst, out / "histograms.png",
                                             f"{title}: the tensors that cost most at 4 bit, with their 4-bit grid")
        sections.append({"title": "The worst tensors and their 4-bit grid", "figure": files["histograms"],
                         "text": ["Histograms of values sampled from the calibration images (log counts). Red lines: "
                                  "the 16 levels of the spec each tensor gets in the suggested recipe (or its best "
                                  "4-bit variant); heavy lines: the range. Values outside the range are clipped."]})
    if result.suggestion is not None:
        sections.append(_suggestion_section(result, probe))
    if result.reparameterization is not None:
        sections.append(_reparam_section(result.reparameterization))
    sections.append(_range_table(result))
    md, html_path = rpt.write_report(out, f"Quantization analysis: {title}", sections)
    files["md"], files["html"] = md, html_path
    return files


def _summary_section(result: Analysis) -> dict:
    s = result.sensitivity
    text = [f"Model {result.model}: {len(result.ranges)} activation quantizer sites of NNCF's default placement. "
            f"Statistics from the calibration images; sensitivities on held-out train images (float top-1 "
            f"{100 * result.float_top1:.2f} % on them)." if result.float_top1 is not None else ""]
    if s is not None:
        text.append(f"{s.evaluations} evaluations in {s.seconds:.0f} s" +
                    ("" if s.complete else " (stopped by --max-minutes: some rows were not measured)") + ".")
        if s.all4:
            text.append(f"Every site 4-bit (each group at its best 4-bit variant): top-1 {_pt(s.all4)} pt, "
                        f"output SQNR {_db(s.all4)} dB, KL {s.all4['kl']:.4f}.")
    return {"title": "Summary", "text": [t for t in text if t]}


def _range_findings(result: Analysis) -> list[str]:
    text = ["max |x| and the 99.99th percentile of |x| (mean per image) of each role group, per block "
            "(log scale). A range much larger than the percentile means a few outliers set the scale of a "
            "min-max quantizer."]
    groups = {}
    for r in result.ranges:
        if r["block"] is not None:
            groups.setdefault(r["group"], []).append(r)
    growth = []
    for g, rows in groups.items():
        rows = sorted(rows, key=lambda r: r["block"])
        first, last = rows[0], rows[-1]
        if first["block"] != last["block"] and first["max_abs"] > 0:
            growth.append((last["max_abs"] / first["max_abs"], g, first, last))
    for ratio, g, first, last in sorted(growth, reverse=True)[:3]:
        text.append(f"{g}: max |x| {first['max_abs']:.3g} in block {first['block']} -> {last['max_abs']:.3g} in "
                    f"block {last['block']} ({ratio:.1f}x).")
    worst = max(result.ranges, key=lambda r: r["max_to_p99.99"], default=None)
    if worst:
        text.append(f"Largest outlier ratio: {worst['name']} ({worst['group']}), max |x| {worst['max_abs']:.3g} is "
                    f"{worst['max_to_p99.99']:.1f}x its p99.99; per-channel spread {worst['channel_spread']:.1f}.")
    if result.compare_ranges:
        a = max(r["max_abs"] for r in result.ranges)
        b = max(r["max_abs"] for r in result.compare_ranges)
        text.append(f"Largest max |x|: {result.model} {a:.3g}, {result.compare_model} {b:.3g} ({a / b:.1f}x).")
    return text


def _group_section(result: Analysis, figure: Path) -> dict:
    s = result.sensitivity
    table = [["group", "sites", "4-bit best variant", "top-1 (pt)", "SQNR (dB)", "KL", "8-bit top-1 (pt)",
              "sym min-max 4-bit (pt)", "affine p99.99 4-bit (pt)", "all 4-bit but this 8-bit (pt)"]]
    for r in s.groups:
        b = r.best4_metrics()
        table.append([r.name, len(r.sites), r.best4 or "", _pt(b), _db(b), _fmt(b["kl"], 3) if b else "",
                      _pt(r.eight_bit()), _pt(r.results.get("s4 min_max")),
                      _pt(r.results.get("a4 percentile(99.99)")), _pt(r.reverse)])
    text = ["Each role group quantized alone (all its sites at once), on held-out train images: top-1 change in "
            "points and output SQNR. Last column: everything at 4 bit except this group at 8 bit."]
    if s.groups and s.groups[0].best4_metrics():
        w = s.groups[0]
        text.append(f"Most sensitive group: {w.name}: {_pt(w.best4_metrics())} pt even with its best 4-bit variant "
                    f"({w.best4}); at 8 bit {_pt(w.eight_bit())} pt.")
    rev = [r for r in s.groups if r.reverse]
    if rev and s.all4:
        best = max(rev, key=lambda r: r.reverse["top1_delta_pt"] or -1e9)
        text.append(f"Keeping {best.name} at 8 bit recovers the most: all-4-bit {_pt(s.all4)} pt -> "
                    f"{_pt(best.reverse)} pt.")
    return {"title": "Sensitivity by role group", "text": text, "table": table, "figure": figure}


def _site_section(result: Analysis, figure: Path) -> dict:
    s = result.sensitivity
    table = [["site", "group", "block", "4-bit best", "top-1 (pt)", "SQNR (dB)", "KL", "8-bit top-1 (pt)"]]
    for r in s.sites[:25]:
        b = r.best4_metrics()
        table.append([r.name, r.group, "" if r.block is None else r.block, r.best4 or "", _pt(b), _db(b),
                      _fmt(b["kl"], 3) if b else "", _pt(r.eight_bit())])
    return {"title": "Sensitivity by site (the 25 most sensitive)", "figure": figure, "table": table,
            "text": ["One site quantized alone; the best of symmetric / affine and min-max / percentile 99.99 at 4 bit "
                     "(per-channel min-max / mse for weights)."]}


def _suggestion_section(result: Analysis, probe: Probe) -> dict:
    sug = result.suggestion
    acts = [v for k, v in sug.config.items() if not probe.site(k).is_weight]
    n_aff = sum(not v.symmetric for v in acts)
    from collections import Counter

    est = Counter(v.range.estimator + (f" {v.range.percentile:g}" if v.range.percentile else "") for v in acts)
    m = sug.metrics.to_dict()
    return {"title": f"Suggested recipe (auto:{sug.target})",
            "text": [f"Searched on the held-out train images in {sug.seconds:.0f} s ({sug.evaluations} evaluations"
                     f"{'' if sug.complete else ', stopped by --max-minutes'}): top-1 {_pt(m)} pt, SQNR "
                     f"{_db(m)} dB, KL {m['kl']:.4f} there.",
                     f"Activations: {n_aff} of {len(acts)} affine; ranges: "
                     + ", ".join(f"{k} x{v}" for k, v in est.most_common()) + ".",
                     "Use it with `qmlp quantize --recipe FILE` (the file given to --suggest-recipe)."]}


def _reparam_section(folds: dict) -> dict:
    table = [["norm", "feeds", "channel spread", "after reparameterization"]]
    table += [[f["norm"], ", ".join(f["linears"]), _fmt(f["spread_before"]), _fmt(f["spread_after"])]
              for f in folds["folded"]]
    table += [[norm, why, "", "not folded"] for norm, why in folds["skipped"].items()]
    return {"title": "Per-channel spread of the norm outputs, before and after reparameterization", "table": table,
            "text": ["Channel spread: the largest channel's half-range over the median channel's, on the calibration "
                     "images. A recipe with \"reparameterize\" folds per-channel scales and shifts of these outputs "
                     "into the norm and the Linears it feeds (RepQ-ViT), so one per-tensor quantizer serves all "
                     "channels; the float function is unchanged. Norms read through a transpose (the token branch) cannot fold."]}


def _range_table(result: Analysis) -> dict:
    table = [["site", "group", "block", "min", "max", "p99", "p99.9", "p99.99", "max/p99.99", "frac neg",
              "channel spread"]]
    for r in result.ranges:
        table.append([r["name"], r["group"], "" if r["block"] is None else r["block"], _fmt(r["min"]),
                      _fmt(r["max"]), _fmt(r["p99"]), _fmt(r["p99.9"]), _fmt(r["p99.99"]), _fmt(r["max_to_p99.99"]),
                      _fmt(r["frac_negative"], 2), _fmt(r["channel_spread"])])
    return {"title": "Range statistics per site", "table": table,
            "text": ["Percentiles are of |x|, the mean over calibration images of the per-image value (the "
                     "percentile estimator's statistic). Channel spread: max over channels of the channel's max |x|, "
                     "divided by the median channel."]}
