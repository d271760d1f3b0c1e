"""``benchmarks/ov_latency.py``: arguments in, the Markdown table on stdout, the JSON file, one-line errors."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from ...console import nncf_output_to_stderr, run_command, write_json
from .report import markdown
from .session import benchmark
from .settings import DEVICES, HINTS, BenchConfig, BenchmarkError


def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="benchmarks/ov_latency.py", description=__doc__.splitlines()[0])
    p.add_argument("--ir", action="append", default=[], metavar="PATH", help="an IR (model.xml or its folder)")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="zoo or timm model, exported on the fly (random weights when not in the zoo)")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME",
                   help="quantization recipe applied to every --model (fp32 is always measured)")
    p.add_argument("--device", action="append", default=[], metavar="D",
                   help=f"OpenVINO device (default: every present one of {', '.join(DEVICES)})")
    p.add_argument("--batch", type=int, default=16, help="throughput-mode batch size")
    p.add_argument("--hint", action="append", choices=HINTS, metavar="|".join(HINTS),
                   help="inference precision hint (default: f32 and bf16)")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds per measurement")
    p.add_argument("--iterations", type=int, default=0, metavar="N",
                   help="requests per measurement instead of --duration")
    p.add_argument("--quick", action="store_true", help="CI mode: 0.5 s per measurement, 8 calibration images")
    p.add_argument("--data", help="calibrate on-the-fly recipes on this data source's train split "
                                  "(fashion-mnist, or an ImageFolder root); default fashion-mnist")
    p.add_argument("--random-calibration", action="store_true",
                   help="calibrate on random images (speed only; labelled so in the IR and the notes)")
    p.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="timm kwargs for every --model")
    p.add_argument("--w4-kernels", action="append", metavar="int8|i4",
                   help="how W4A8/W4A4 IRs built on the fly run their 4-bit weights: int8 GEMM kernels (default) "
                        "or i4 weight-decompression kernels; repeat for one row each (recipe@kernels)")
    p.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="measure everything N times, the IRs taking turns; report the median and the spread")
    p.add_argument("--vs", default="", metavar="RECIPE",
                   help="add speedups against this recipe's IR of the same model (e.g. nncf_default_w8a8)")
    p.add_argument("--cross-check", action="store_true",
                   help="also run OpenVINO's benchmark_app on every measurement and report both")
    p.add_argument("--json", metavar="PATH", help="write the rows and the machine block as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    args = build_parser().parse_args(argv)
    return run_command("ov_latency", lambda: _run(args))


def _run(args) -> int:
    if args.json and Path(args.json).is_dir():
        raise BenchmarkError(f"--json {args.json} is a folder; give a file path such as {args.json}/ov.json")
    from ...sources import DataSource, parse_model_kwargs

    cfg = BenchConfig(devices=args.device, hints=args.hint or list(HINTS), batch=args.batch,
                      duration_s=args.duration, iterations=args.iterations, quick=args.quick,
                      data=DataSource(args.data).to_json() if args.data else {},
                      random_calibration=args.random_calibration, model_kwargs=parse_model_kwargs(args.model_kwargs),
                      w4_kernels=args.w4_kernels or ["int8"], repeats=args.repeats, versus=args.vs,
                      cross_check=args.cross_check)
    with nncf_output_to_stderr():
        result = benchmark(args.ir, args.model, args.recipe, cfg, progress=not args.no_progress)
    print(markdown(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
