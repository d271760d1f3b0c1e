"""Per-layer activation ranges of the Linear inputs, base vs Q-MLP zoo models (the remedies exist to shrink them).

    python benchmarks/activation_ranges.py [--images 512] [--json PATH]

For every Q-MLP zoo model and its base: max |x| and the 99.99th percentile of |x| of every Linear input on the
first N Fashion-MNIST test images; prints the median and max over layers and writes per-layer JSON.
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--json", help="write per-layer ranges and summaries here")
    args = p.parse_args(argv)
    from qmlp_nncf.console import run_command

    return run_command("activation_ranges", lambda: _run(args))


def _run(args) -> int:
    from qmlp_nncf.analysis.ranges import linear_input_ranges
    from qmlp_nncf.console import write_json
    from qmlp_nncf.checkpoint import load_model
    from qmlp_nncf.data import FashionMNIST
    from qmlp_nncf.zoo import list_entries

    entries = {e.name: e for e in list_entries()}
    pairs = [(e.base, e.name) for e in entries.values() if e.base in entries]
    if not pairs:
        print("no Q-MLP zoo model with its base yet (`qmlp finetune --zoo`)", file=sys.stderr)
        return 2
    test = FashionMNIST("test")
    result = {}
    print(f"| model | Linear layers | median max|x| | max max|x| | median p{args.percentile} | max p{args.percentile} |")
    print("|---|---:|---:|---:|---:|---:|")
    for pair in pairs:
        for name in pair:
            model, _ = load_model(entries[name].checkpoint)
            layers, summary = linear_input_ranges(model, test, args.images, percentile=args.percentile)
            result[name] = {"summary": summary, "layers": layers}
            print(f"| {name} | {summary['layers']} | {summary['median_max_abs']:.2f} | {summary['max_max_abs']:.2f} | "
                  f"{summary['median_percentile']:.2f} | {summary['max_percentile']:.2f} |", flush=True)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
