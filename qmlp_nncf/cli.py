"""The ``qmlp`` command: train, convert, quantize, fine-tune, export, evaluate, list the zoo.

Every sub-command exits non-zero with a one-line message on bad input; ``--json`` prints one
JSON object on stdout (progress and logs go to stderr).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .checkpoint import CheckpointError
from .data import DataError


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _threads(n: int) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


# ---------------------------------------------------------------- train
def cmd_train(args) -> dict:
    from .training import TrainConfig, train
    from .zoo import publish

    cfg = TrainConfig(model=args.model, out=args.out, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      label_smoothing=args.label_smoothing, ema_decay=args.ema, seed=args.seed, amp=args.amp,
                      data_dir=args.data_dir, train_subset=args.train_subset, test_subset=args.test_subset,
                      init_from=args.init_from, teacher=args.teacher, distill_weight=args.distill_weight)
    result = train(cfg, resume=args.resume, log=_log)
    if args.zoo and result:
        from .models import family_of

        entry = publish(args.model, family_of(args.model), Path(args.out) / "model.pth", result,
                        command="qmlp " + " ".join(shlex.quote(a) for a in sys.argv[1:]), base=args.base)
        _log(f"recorded {args.model} in the zoo ({entry.checkpoint})")
    return {k: result[k] for k in ("top1", "epoch", "train_time_s", "params") if k in result}


# ---------------------------------------------------------------- eval
def resolve_model(name: str | None, checkpoint: str | None, float_for: str = ""):
    """A model from a checkpoint file, a zoo name, or a timm name (random weights).

    ``float_for``: what needs a float model (e.g. ``"--recipe"``); a quantized checkpoint is then refused."""
    from .checkpoint import create_model, load_model, require_float
    from .zoo import get_entry

    if checkpoint:
        model, meta = load_model(checkpoint, arch=name)
        if float_for:
            require_float(meta, checkpoint, float_for)
        return model, meta
    if name is None:
        raise ValueError("give --model NAME (a zoo model, see `qmlp zoo`) or --checkpoint PATH")
    try:
        return load_model(get_entry(name).checkpoint)
    except KeyError:
        return create_model(name).eval(), {"arch": name, "note": "random weights (not in the zoo)"}


def eval_dataset(data: str, model, data_dir: str | None):
    from .data import FashionMNIST, imagenet_folder

    if data == "fashion-mnist":
        return FashionMNIST("test", data_dir)
    return imagenet_folder(data, model)


def cmd_eval(args) -> dict:
    """Top-1 of a float or quantized checkpoint, of a model quantized on the fly (--recipe), or of an IR."""
    from torch.utils.data import Subset

    from .evaluation import evaluate

    if args.ir:
        from .data import FashionMNIST
        from .export.evaluate import ir_top1

        if args.data != "fashion-mnist":
            raise ValueError("--ir evaluates on Fashion-MNIST (the IRs of the small zoo models)")
        dataset = FashionMNIST("test", args.data_dir)
        if args.limit:
            dataset = Subset(dataset, range(min(args.limit, len(dataset))))
        return {"ir": args.ir, "data": args.data, **ir_top1(args.ir, dataset)}
    model, meta = resolve_model(args.model, args.checkpoint, float_for="qmlp eval --recipe" if args.recipe else "")
    result = {"model": meta.get("arch", args.model), "data": args.data, "reference_top1": meta.get("top1")}
    if args.recipe:
        from .quantization.commands import quantize_from_args

        model, recipe, seconds = quantize_from_args(args, model)
        result.update(recipe=recipe, ptq_time_s=round(seconds, 2))
    dataset = eval_dataset(args.data, model, args.data_dir)
    if args.limit:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    return {**result, **evaluate(model, dataset, batch_size=args.batch_size, progress=not args.json)}


# ---------------------------------------------------------------- zoo
def cmd_zoo(args) -> dict | list:
    from .zoo import list_entries

    entries = [e.to_json() for e in list_entries()]
    if args.json:
        return entries
    print("| model | family | params | epochs | train time | top-1 |")
    print("|---|---|---:|---:|---:|---:|")
    for e in entries:
        print(f"| {e['name']} | {e['family']} | {e['params']:,} | {e['epochs']} | "
              f"{e['train_time_s'] / 60:.0f} min | {100 * e['top1']:.2f} % |")
    return entries


def add_training_options(p: argparse.ArgumentParser, epochs: int = 15, lr: float = 2e-3,
                         warmup_epochs: float = 1.0) -> None:
    """The TrainConfig knobs shared by ``qmlp train`` and ``qmlp finetune``."""
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY", help="EMA decay, 0 = off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto")
    p.add_argument("--train-subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--distill-weight", type=float, default=0.5)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pth")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qmlp", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on Fashion-MNIST (torchrun-ready)")
    t.add_argument("--model", required=True, help="timm model name, e.g. resmlp_fmnist")
    t.add_argument("--out", required=True, help="run folder (last.pth for --resume, model.pth)")
    add_training_options(t)
    t.add_argument("--init-from", help="checkpoint to start from (fine-tuning)")
    t.add_argument("--teacher", help="checkpoint of a float teacher for distillation")
    t.add_argument("--zoo", action="store_true", help="copy the result into the zoo and record it")
    t.add_argument("--base", help="with --zoo: the zoo model this one derives from")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="top-1 of a model on Fashion-MNIST test or an ImageNet-style folder")
    e.add_argument("--model", help="zoo or timm model name")
    e.add_argument("--checkpoint", help="checkpoint file (its architecture is read from it)")
    e.add_argument("--data", default="fashion-mnist", help="fashion-mnist, or an ImageFolder path")
    e.add_argument("--limit", type=int, default=0, help="evaluate the first N images only")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--recipe", help="quantize with this recipe first (calibration on Fashion-MNIST train)")
    e.add_argument("--calibration-size", type=int, default=0, help="with --recipe: calibration images")
    e.add_argument("--ir", help="evaluate an OpenVINO IR (.xml) instead of a torch model")
    e.set_defaults(func=cmd_eval)

    z = sub.add_parser("zoo", help="list the committed models and their reference top-1")
    z.set_defaults(func=cmd_zoo)

    from .export.commands import add_commands as add_export_commands
    from .models.commands import add_commands as add_model_commands
    from .quantization.commands import add_commands as add_quantization_commands

    for s in (t, e, z, *add_export_commands(sub), *add_model_commands(sub), *add_quantization_commands(sub)):
        s.add_argument("--json", action="store_true", help="print the result as one JSON object")
        s.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
        s.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files (else $QMLP_DATA_DIR, "
                                          "the Debian package, the download cache)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _threads(args.threads)
    try:
        result = args.func(args)
    except (ValueError, KeyError, DataError, CheckpointError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(json.dumps({"error": msg}) if getattr(args, "json", False) else f"qmlp {args.command}: error: {msg}",
              file=sys.stdout if getattr(args, "json", False) else sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    elif args.command != "zoo":
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
