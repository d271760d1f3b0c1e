"""``qmlp quantize`` (PTQ with a recipe or an NNCF-style config, then evaluate, save and export) and
``qmlp qat`` (fine-tune a quantized checkpoint with distillation)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def recipe_from_args(args):
    """``(recipe, ignored_scope, config)`` from ``--recipe NAME`` or ``--config FILE``."""
    from .recipes import load_recipe

    if getattr(args, "config", None):
        from .config import load_config

        cfg = load_config(args.config)
        return cfg.recipe, cfg.ignored_scope, cfg
    return load_recipe(args.recipe), None, None


def quantize_from_args(args, model, resolved=None):
    """PTQ of ``model`` with ``--recipe`` or ``--config`` (or an already ``resolved`` recipe_from_args
    result); returns (quantized, recipe name, seconds)."""
    from ..data import FashionMNIST, calibration_subset
    from . import quantize

    recipe, ignored, _ = resolved or recipe_from_args(args)
    calib = calibration_subset(FashionMNIST("train", args.data_dir), args.calibration_size or recipe.calibration_size)
    t0 = time.time()
    quantized = quantize(model, calib, recipe, ignored_scope=ignored, log=_log)
    return quantized, recipe.name, time.time() - t0


def cmd_quantize(args) -> dict:
    from torch.utils.data import Subset

    from ..checkpoint import quantized_payload, save_checkpoint
    from ..cli import resolve_model
    from ..data import FashionMNIST
    from ..evaluation import evaluate
    from ..export import export_ir
    from ..export.prepare import input_shape_of

    if args.list_recipes:
        from .recipes import list_recipes, load_recipe

        return {name: load_recipe(name).description for name in list_recipes()}
    if not args.out:
        raise ValueError("give --out DIR: the folder for quantized.pth and ir/model.xml")
    if not (args.recipe or args.config):
        raise ValueError("give --recipe NAME (see `qmlp quantize --list-recipes`) or --config FILE")
    resolved = recipe_from_args(args)
    cfg = resolved[2]
    if cfg is not None:
        args.model, args.checkpoint = args.model or cfg.model, args.checkpoint or cfg.checkpoint
    model, meta = resolve_model(args.model, args.checkpoint, float_for="qmlp quantize")
    if input_shape_of(model) != (1, 28, 28):
        raise ValueError(f"qmlp quantize calibrates and evaluates on Fashion-MNIST (1x28x28); {meta.get('arch')} "
                         f"takes {input_shape_of(model)}: use qmlp_nncf.quantize() with your own calibration "
                         f"images, or benchmarks/ov_latency.py (random data, speed only)")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise ValueError(f"{out} is not empty; pass --force to overwrite")
    quantized, recipe, ptq_s = quantize_from_args(args, model, resolved)
    test = FashionMNIST("test", args.data_dir)
    if args.limit:
        test = Subset(test, range(min(args.limit, len(test))))
    metrics = evaluate(quantized, test, progress=not args.json)
    arch = meta.get("arch", args.model)
    payload = {"state_dict": quantized.state_dict(), "arch": arch, "model_kwargs": meta.get("model_kwargs", {}),
               "recipe": recipe, "report": quantized.qmlp_report, "top1": metrics["top1"],
               "test_images": metrics["n"], "float_top1": meta.get("top1"), "source": args.checkpoint or arch}
    payload.update(quantized_payload(quantized))
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "quantized.pth", payload)
    result = {"model": arch, "recipe": recipe, "top1": metrics["top1"], "n": metrics["n"],
              "float_top1": meta.get("top1"), "ptq_time_s": round(ptq_s, 2),
              "quantizers": sum(not r["float"] for r in quantized.qmlp_report),
              "checkpoint": str(out / "quantized.pth")}
    if quantized.qmlp_range_tuning is not None:
        result["range_tuning"] = quantized.qmlp_range_tuning
    if not args.no_export:
        ir = export_ir(quantized, out / "ir", (1, *input_shape_of(model)), force=args.force,
                       metadata={"recipe": recipe, "source_checkpoint": payload["source"],
                                 "torch_top1": metrics["top1"], "test_images": metrics["n"]})
        result.update(ir=str(ir.xml), ir_mb=round(ir.bin.stat().st_size / 2**20, 3))
    return result


def cmd_qat(args) -> dict:
    from ..checkpoint import load_model
    from .qat import QATSettings, qat

    quantized, meta = load_model(args.checkpoint)
    teacher = args.teacher or meta.get("source")
    if teacher and not Path(teacher).is_file():
        from ..zoo import get_entry

        teacher = str(get_entry(teacher).checkpoint)
    settings = QATSettings(epochs=args.epochs, lr=args.lr, warmup_epochs=args.warmup_epochs,
                           batch_size=args.batch_size, distill_weight=args.distill_weight,
                           train_subset=args.train_subset)
    cfg = settings.train_config(meta["arch"], args.out, teacher, seed=args.seed, data_dir=args.data_dir,
                                test_subset=args.test_subset, init_from=args.checkpoint)
    result = qat(quantized, cfg, resume=args.resume, log=_log)
    return {k: result[k] for k in ("top1", "epoch", "train_time_s") if k in result} | {"recipe": meta.get("recipe")}


def add_commands(subparsers) -> list[argparse.ArgumentParser]:
    from . import list_recipes
    from .qat import QATSettings

    q = subparsers.add_parser("quantize", help="post-training quantization with a recipe or an NNCF-style config")
    q.add_argument("--recipe", help=f"a recipe: {', '.join(list_recipes())}, or a recipe .json path")
    q.add_argument("--config", help="NNCF-style JSON config (docs/config.md); may name the model and recipe")
    q.add_argument("--model", help="zoo or timm model name")
    q.add_argument("--checkpoint", help="float checkpoint")
    q.add_argument("--out", help="output folder: quantized.pth and ir/model.xml (required)")
    q.add_argument("--list-recipes", action="store_true", help="print every recipe with its description and exit")
    q.add_argument("--calibration-size", type=int, default=0, help="calibration images (default: the recipe's)")
    q.add_argument("--limit", type=int, default=0, help="evaluate on the first N test images only")
    q.add_argument("--no-export", action="store_true", help="skip the OpenVINO IR export")
    q.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    q.set_defaults(func=cmd_quantize)

    t = subparsers.add_parser("qat", help="quantization-aware fine-tuning of a `qmlp quantize` checkpoint")
    t.add_argument("--checkpoint", required=True, help="quantized.pth written by `qmlp quantize`")
    t.add_argument("--teacher", help="float teacher checkpoint or zoo name (default: the quantized model's source)")
    t.add_argument("--out", required=True)
    d = QATSettings()
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--distill-weight", type=float, default=d.distill_weight)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--train-subset", type=int, default=d.train_subset)
    t.add_argument("--test-subset", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    t.set_defaults(func=cmd_qat)
    return [q, t]
