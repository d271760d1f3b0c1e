"""``benchmarks/accuracy.py``: the command line of the accuracy benchmark (a thin client of the runner)."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import torch

from ...console import nncf_output_to_stderr, run_command, write_json
from ...training.qat import QATSettings
from .ablation import ablate
from .models import AccuracyError, BenchModel, zoo_models
from .reference import REFERENCE, compare_reference, load_reference, update_reference
from .report import ablation_markdown, markdown
from .runner import AccuracyConfig, merge, run
from .targets import load_targets


def _read_result(path: str) -> dict:
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AccuracyError(f"--report {path}: not a readable JSON result ({e})") from None

DESCRIPTION = "Top-1 of every zoo model x recipe: float, PTQ in torch fake-quant, and the exported OpenVINO IR."


def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="benchmarks/accuracy.py", description=DESCRIPTION)
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="zoo model (default: all); with --checkpoint/--pretrained-file/--model-kwargs: the one "
                        "model to benchmark (a timm name)")
    p.add_argument("--checkpoint", help="benchmark this qmlp checkpoint instead of zoo models")
    p.add_argument("--pretrained-file", help="timm weights for the one --model")
    p.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--data", help="fashion-mnist (default) or an ImageFolder root with train/ and val/")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME", help="recipe (default: all)")
    p.add_argument("--matching-only", action="store_true",
                   help="skip Q-MLP recipes (expects_qmlp) on models without Q-MLP surgery")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N test images (default: all 10k)")
    p.add_argument("--calibration-size", type=int, metavar="N", help="calibration images (default: the recipe's)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="repeat the calibration draw (and QAT) with seeds 0..N-1: mean and sd per row (default 1)")
    p.add_argument("--no-ir", action="store_true", help="torch fake-quant only, no OpenVINO export")
    p.add_argument("--ir-dir", metavar="DIR", help="keep the exported IRs in DIR (default: a temporary folder)")
    p.add_argument("--qat", action="store_true",
                   help="also fine-tune each PTQ model (qmlp_nncf.training.qat, `qmlp qat` defaults)")
    p.add_argument("--qat-recipe", action="append", default=[], metavar="NAME",
                   help="QAT only after this recipe's PTQ (repeat; implies --qat)")
    p.add_argument("--report", nargs="+", metavar="JSON",
                   help="no measurement: merge these --json results (e.g. runs side by side) into one report")
    p.add_argument("--qat-epochs", type=int, default=QATSettings.epochs, metavar="N")
    p.add_argument("--qat-train-subset", type=int, default=0, metavar="N",
                   help="QAT on the first N shuffled train images per epoch (default: all 60k)")
    p.add_argument("--qat-lr", type=float, default=QATSettings.lr, metavar="LR",
                   help=f"QAT peak learning rate (default {QATSettings.lr:g})")
    p.add_argument("--qat-distill-weight", type=float, default=QATSettings.distill_weight, metavar="W",
                   help=f"QAT loss: (1-W) * CE + W * KL to the float model (default {QATSettings.distill_weight:g})")
    p.add_argument("--ablate", metavar="MODEL", help="ablation: remove one rule at a time from --recipe on MODEL")
    p.add_argument("--check-reference", nargs="?", const=str(REFERENCE), metavar="PATH",
                   help="compare with the reference numbers; exit 1 on a mismatch")
    p.add_argument("--update-reference", nargs="?", const=str(REFERENCE), metavar="PATH",
                   help="write the measured rows (means over --seeds) into the reference file")
    p.add_argument("--tolerance", type=float, default=0.003, help="with --update-reference (fraction of top-1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--data-dir", help="Fashion-MNIST folder (default: see qmlp_nncf.data)")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON (atomically); rows are also appended to "
                                                 "PATH.rows.jsonl as they are measured")
    p.add_argument("--resume", action="store_true",
                   help="with the --json PATH of an interrupted run: reuse its measured rows, measure the rest")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    args = build_parser().parse_args(argv)
    return run_command("accuracy", lambda: _run(args, argv))


def _run(args, argv: Optional[list[str]]) -> int:
    this_command = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")  # tracing in ov.convert_model
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.json and Path(args.json).is_dir():
        raise AccuracyError(f"--json {args.json} is a folder; give a file path such as {args.json}/accuracy.json")
    from ...sources import DataSource, ModelSource, parse_model_kwargs

    if args.data:
        DataSource(spec=args.data, data_dir=args.data_dir).check("train", "val")  # before any model is built
    data = DataSource(spec=args.data, data_dir=args.data_dir).to_json() if args.data else {}
    custom = bool(args.checkpoint or args.pretrained_file or args.model_kwargs)
    if custom and len(args.model) > 1:
        raise AccuracyError("--checkpoint/--pretrained-file/--model-kwargs describe one model: give at most one --model")
    models = [BenchModel.from_source(ModelSource(args.model[0] if args.model else None, args.checkpoint,
                                                 args.pretrained_file, parse_model_kwargs(args.model_kwargs)))
              ] if custom else None
    cfg = AccuracyConfig(models=[] if custom else args.model, recipes=args.recipe, matching_only=args.matching_only,
                         limit=args.limit, calibration_size=args.calibration_size, seeds=args.seeds,
                         export_ir=not args.no_ir, reference=args.check_reference,
                         qat=args.qat or bool(args.qat_recipe), qat_recipes=args.qat_recipe, ir_dir=args.ir_dir,
                         qat_settings=QATSettings(epochs=args.qat_epochs, train_subset=args.qat_train_subset,
                                                  lr=args.qat_lr, distill_weight=args.qat_distill_weight),
                         data_dir=args.data_dir, data=data, progress=not args.no_progress,
                         rows_file=f"{args.json}.rows.jsonl" if args.json and not args.ablate else None,
                         resume=args.resume)
    if args.ablate:
        if (len(args.recipe) != 1 or args.model or args.qat or args.check_reference or args.update_reference
                or args.seeds != 1):
            raise AccuracyError("--ablate MODEL takes exactly one --recipe, and no --model, --qat, --seeds or "
                                "--check/--update-reference")
        with nncf_output_to_stderr():
            result = ablate(models[0] if models else zoo_models([args.ablate])[0], args.recipe[0], cfg)
        print(ablation_markdown(result))
    else:
        reference = load_reference(args.check_reference) if args.check_reference else None
        if args.report:
            if args.model or args.recipe or custom or args.qat or args.qat_recipe:
                raise AccuracyError("--report merges results measured before: drop --model, --recipe, "
                                    "--checkpoint and --qat")
            result = merge([_read_result(p) for p in args.report], load_targets(args.check_reference or REFERENCE))
        else:
            with nncf_output_to_stderr():
                result = run(cfg, models)
            result["command"] = this_command
        print(markdown(result))
    if args.json:
        write_json(args.json, result)
        Path(f"{args.json}.rows.jsonl").unlink(missing_ok=True)  # the result holds every row now
        print(f"wrote {args.json}", file=sys.stderr)
    if args.ablate:
        return 0
    if args.update_reference:
        update_reference(args.update_reference, result["summary"], args.tolerance, this_command)
        print(f"updated {args.update_reference}", file=sys.stderr)
    if reference is not None:
        checks = compare_reference(result["summary"], reference)
        for c in checks:
            print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['model']} / {c['recipe']} ({c['mode']}) n={c['n']} "
                  f"seeds={c['seeds']} {c['metric']}: "
                  f"{c['measured']:.4f} vs reference {c['reference']:.4f} (tolerance {c['tolerance']})",
                  file=sys.stderr)
        if not checks:
            print("note: no measured row matches a reference entry (model, recipe, mode, n, seeds)", file=sys.stderr)
        if not all(c["ok"] for c in checks):
            return 1
    return 0
