"""Activation range by depth: how the ranges the quantizers must cover change along a model, and between a
shallow and a deep model of the same family (``benchmarks/depth.py``).

For each model: the activation sites of ``qmlp analyze`` (``analysis.analyze.site_ranges`` on calibration
images), grouped by role (token-mixing input, channel-mixing input, hidden activation...). Per role and model:
max |x| and the mean per-image p99.99 of |x| in the first and last block, their maximum over blocks and the
block where it is, and last/first. With ``--accuracy`` (JSON files of ``benchmarks/accuracy.py``), the 4-bit
numbers of each model beside it: stock ``nncf_transformer_w4a4`` and the best Q-MLP 4-bit result (means over
seeds), and the gap. The figure draws the first two models' ranges per block (the second dashed).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from ..console import nncf_output_to_stderr, run_command, write_json
from ..progress import log_line
from .ov_latency import machine_info

KEYS = ("max_abs", "p99.99")


def depth_rows(name: str, ranges: list[dict], blocks: int) -> list[dict]:
    """One row per role group: the range in the first and last block, the max over blocks and where."""
    groups: dict[str, dict[int, dict]] = {}
    for r in ranges:
        if r["block"] is None:
            continue
        g = groups.setdefault(r.get("depth_group") or r["group"], {})
        cur = g.setdefault(r["block"], {k: 0.0 for k in KEYS})
        for k in KEYS:
            cur[k] = max(cur[k], r[k])
    rows = []
    for group, by_block in sorted(groups.items()):
        first, last = by_block[min(by_block)], by_block[max(by_block)]
        peak = max(by_block, key=lambda b: by_block[b]["max_abs"])
        row = {"model": name, "blocks": blocks, "group": group, "sites_in_blocks": len(by_block),
               "peak_block": peak, "per_block": {b: by_block[b] for b in sorted(by_block)}}
        for k in KEYS:
            row[f"first_{k}"], row[f"last_{k}"] = first[k], last[k]
            row[f"max_{k}"] = max(v[k] for v in by_block.values())
            row[f"last_over_first_{k}"] = last[k] / first[k] if first[k] > 0 else None
        rows.append(row)
    return rows


def four_bit(accuracy: list[dict], models: list[str], baseline: str = "nncf_transformer_w4a4") -> list[dict]:
    """Per base model of ``models``: float, the stock 4-bit baseline and the best Q-MLP 4-bit result (PTQ, the
    means over seeds) from accuracy results; the Q-MLP result is that of the model whose base it is."""
    import re

    floats, summary = {}, []
    for result in accuracy:
        floats |= {f["model"]: f for f in result["floats"]}
        summary += result.get("summary") or result["rows"]
    out = []
    for name in models:
        if floats.get(name, {}).get("base"):
            continue  # a Q-MLP model: its numbers are on its base model's line
        stock = next((r for r in summary if r["model"] == name and r["recipe"] == baseline and r["mode"] == "ptq"), None)
        qmlp = [n for n, f in floats.items() if f.get("base") == name]
        ours = [r for r in summary if r["model"] in qmlp and r["mode"] == "ptq" and re.search("w4a[48]", r["recipe"])
                and r["recipe"].startswith(("qmlp_", "auto:"))]
        best = max(ours, key=lambda r: r["torch_top1"], default=None)
        if stock is None and best is None:
            continue
        out.append({"model": name, "float_top1": floats.get(name, {}).get("top1"),
                    "stock": stock and {"recipe": baseline, "top1": stock["torch_top1"], "seeds": stock.get("seeds", 1),
                                        "sd": stock.get("torch_top1_sd")},
                    "qmlp": best and {"model": best["model"], "recipe": best["recipe"], "top1": best["torch_top1"],
                                      "seeds": best.get("seeds", 1), "sd": best.get("torch_top1_sd")},
                    "gap_pt": 100 * (best["torch_top1"] - stock["torch_top1"]) if stock and best else None})
    return out


def run(models: list[str], calibration_size: int = 128, seed: int = 0, out: Optional[Path] = None,
        accuracy: Optional[list[dict]] = None, log=log_line) -> dict:
    from ..analysis import report
    from ..analysis.analyze import build_probe, site_ranges
    from ..sources import DataSource, ModelSource

    data = DataSource()
    ranges, rows = {}, []
    for name in models:
        model = ModelSource(name).load().model.eval()
        ranges[name] = site_ranges(build_probe(model, data, calibration_size, 0, seed, log))
        rows += depth_rows(name, ranges[name], len(model.blocks))
    result = {"machine": machine_info(), "models": models, "calibration_size": calibration_size, "seed": seed,
              "rows": rows, "four_bit": four_bit(accuracy or [], models)}
    if out is not None and len(models) >= 2:
        out.mkdir(parents=True, exist_ok=True)
        a, b = models[:2]
        result["figure"] = str(report.range_by_depth(ranges[b], out / "range_by_depth.png", b, compare=ranges[a],
                                                     compare_title=a))
    return result


def _f(v, nd=2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def markdown(result: dict) -> str:
    lines = ["| model | blocks | role | max abs: first | last | max (block) | last/first | p99.99: first | last | "
             "max | last/first |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['blocks']} | {r['group']} | {_f(r['first_max_abs'])} | "
                     f"{_f(r['last_max_abs'])} | {_f(r['max_max_abs'])} ({r['peak_block']}) | "
                     f"{_f(r['last_over_first_max_abs'])} | {_f(r['first_p99.99'])} | {_f(r['last_p99.99'])} | "
                     f"{_f(r['max_p99.99'])} | {_f(r['last_over_first_p99.99'])} |")
    lines += ["", f"Ranges over {result['calibration_size']} Fashion-MNIST train images (seed {result['seed']}); "
                  "p99.99 = mean over images of the per-image 99.99th percentile of |x|; per role, the max over "
                  "the role's sites in a block."]
    if result["four_bit"]:
        lines += ["", "| base model | float | stock W4A4 | best Q-MLP 4-bit | Q-MLP − stock pt |",
                  "|---|---:|---:|---:|---:|"]

        def pm(x):
            if not x:
                return "-"
            sd = f" ± {100 * x['sd']:.2f}" if x.get("seeds", 1) > 1 and x.get("sd") is not None else ""
            where = f"{x['model']} {x['recipe']}" if x.get("model") else x["recipe"]
            return f"{100 * x['top1']:.2f}{sd} ({where}, {x['seeds']} seeds)"
        for g in result["four_bit"]:
            lines.append(f"| {g['model']} | {_f(100 * g['float_top1'] if g['float_top1'] else None)} | {pm(g['stock'])} | "
                         f"{pm(g['qmlp'])} | {_f(g['gap_pt'])} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    p = argparse.ArgumentParser(prog="benchmarks/depth.py", description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--model", action="append", required=True, metavar="NAME",
                   help="zoo/timm model or checkpoint (repeat; the figure compares the first two)")
    p.add_argument("--accuracy", action="append", default=[], metavar="JSON",
                   help="results of benchmarks/accuracy.py --json: the 4-bit numbers beside the ranges")
    p.add_argument("--calibration-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", help="folder for range_by_depth.png")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    return run_command("depth", lambda: _run(args))


def _run(args) -> int:
    if args.calibration_size < 1:
        raise ValueError(f"--calibration-size must be >= 1, got {args.calibration_size}")
    accuracy = []
    for path in args.accuracy:
        try:
            accuracy.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--accuracy {path}: not a JSON result of benchmarks/accuracy.py ({e})") from None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with nncf_output_to_stderr():
        result = run(args.model, args.calibration_size, args.seed, Path(args.out) if args.out else None, accuracy)
    print(markdown(result))
    if args.json:
        write_json(args.json, result)
    return 0
