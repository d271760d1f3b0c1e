"""Wall time of post-training quantization (``qmlp_nncf.quantize``) per model x recipe.

Times the quantize call alone: the model is built and the calibration images are decoded before the
clock starts. Zoo models calibrate on Fashion-MNIST train images; 224-px timm models on random
N(0,1) images (their weights are random too: time does not depend on them).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

import torch

from ..console import nncf_output_to_stderr, run_command, write_json

BACKENDS = ("torch", "openvino")


def time_ptq(name: str, recipe: str, calibration_size: int = 0, data=None, random_calibration: bool = False,
             backends=("torch",), repeat: int = 1) -> list[dict]:
    """PTQ runs (``calibration_size`` 0: the recipe's) on ``data``'s train split (a ``DataSource``; default
    Fashion-MNIST) or random images, one row per backend: ``torch`` quantizes the torch model, ``openvino`` its
    float IR (converted before the clock starts) on NNCF's OpenVINO backend. With ``repeat`` > 1 the backends
    alternate and each row has the median and the range of its runs."""
    import statistics

    from ..export.openvino_ir import convert
    from ..export.prepare import calibration_data, check_recipe
    from ..quantization import quantize
    from ..quantization.recipes.recipe import items_wanted, resolve_recipe
    from ..sources import ModelSource

    check_recipe(recipe)
    resolved = resolve_recipe(recipe)
    calibration_size = calibration_size or resolved.calibration_size
    model = ModelSource(name).load().model.eval()
    data, described = calibration_data(model, items_wanted(resolved, calibration_size), data,
                                       random_calibration)
    items = [data[i] for i in range(len(data))]  # decoded before the clock starts
    inputs = {"torch": model}
    if "openvino" in backends:
        inputs["openvino"] = convert(model, (1, *items[0][0].shape))
    times: dict[str, list[float]] = {b: [] for b in backends}
    quantizers, searches = {}, {}
    for _ in range(repeat):
        for backend in backends:
            t0 = time.perf_counter()
            quantized = quantize(inputs[backend], items, recipe=resolved, subset_size=calibration_size,
                                 log=lambda msg: None)
            times[backend].append(time.perf_counter() - t0)
            quantizers[backend] = quantized.quantizers
            if quantized.auto is not None:  # where an auto: recipe's time goes
                a = quantized.auto
                searches[backend] = {"search_s": round(a.seconds, 1), "evaluations": a.evaluations,
                                     "search_complete": a.complete, "kept": (a.finish or {}).get("kept"),
                                     "skipped": (a.finish or {}).get("skipped")}
            del quantized
    return [{"model": name, "recipe": recipe, "backend": b, "calibration_size": calibration_size,
             "calibration": described, "ptq_s": round(statistics.median(times[b]), 1),
             "runs_s": [round(t, 1) for t in times[b]], "quantizers": quantizers[b],
             "threads": torch.get_num_threads(), **searches.get(b, {})} for b in backends]


def markdown(rows: list[dict]) -> str:
    lines = ["| model | recipe | backend | calibration | PTQ s (median) | runs | quantizers |",
             "|---|---|---|---|---:|---|---:|"]
    lines += [f"| {r['model']} | {r['recipe']} | {r['backend']} | {r['calibration']} | {r['ptq_s']:.1f} | "
              f"{min(r['runs_s']):.1f}-{max(r['runs_s']):.1f} | {r['quantizers']} |" for r in rows]
    return "\n".join(lines) + f"\n\n{rows[0]['threads'] if rows else '-'} torch threads, {os.cpu_count()} CPUs."


def main(argv: Optional[list[str]] = None) -> int:
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    p = argparse.ArgumentParser(prog="benchmarks/ptq_time.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME", help="zoo or timm model name")
    p.add_argument("--recipe", action="append", required=True, metavar="NAME")
    p.add_argument("--calibration-size", type=int, default=0, metavar="N",
                   help="calibration images (default: the recipe's, 300 for most)")
    p.add_argument("--data", help="calibration data source: fashion-mnist (default) or an ImageFolder root")
    p.add_argument("--random-calibration", action="store_true", help="calibrate on random images (timing only)")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="torch (default) and/or openvino (the float IR on NNCF's OpenVINO backend); both alternate")
    p.add_argument("--repeat", type=int, default=1, help="runs per backend (median and range reported)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    args = p.parse_args(argv)
    return run_command("ptq_time", lambda: _run(args))


def _run(args) -> int:
    from ..sources import DataSource

    data = DataSource(args.data) if args.data else None
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.model:
        for recipe in args.recipe:
            with nncf_output_to_stderr():
                new = time_ptq(name, recipe, args.calibration_size, data, args.random_calibration,
                               tuple(args.backend or ("torch",)), args.repeat)
            rows += new
            for r in new:
                print(f"{name} / {recipe} / {r['backend']}: {r['ptq_s']:.1f} s", file=sys.stderr, flush=True)
    print(markdown(rows))
    if args.json:
        write_json(args.json, {"rows": rows})
    return 0
