"""The ``qmlp`` command (also ``python -m qmlp_nncf``): train, convert, fine-tune, quantize, QAT, export,
evaluate, list the zoo, on any model source and data source.

Argument parsing and printing only: each sub-command builds a ``ModelSource`` / ``DataSource`` and calls
the library (``qmlp_nncf.sources``, ``training``, ``models.convert``, ``quantization``, ``export``).
Every sub-command exits non-zero with a one-line message on bad input; ``--json`` prints one JSON
object on stdout (progress and logs go to stderr). Nothing imports this module.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from .checkpoint import CheckpointError
from .data import DataError
from .export.openvino_ir import W4_KERNELS

W4_HELP = ("how the IR runs the 4-bit weights of a W4A8/W4A4 model: int8 (default; int8 GEMM kernels, the weights "
           "stay 4-bit on disk) or i4 (OpenVINO's weight-decompression kernels: slower on VNNI CPUs, and on AVX2 "
           "CPUs they skip some activation quantizers)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- shared options
def add_model_options(p: argparse.ArgumentParser, required_name: bool = False) -> None:
    g = p.add_argument_group("model source")
    g.add_argument("--model", required=required_name,
                   help="zoo model (`qmlp zoo`) or timm model name; with --checkpoint: the architecture of a "
                        "bare state dict")
    g.add_argument("--checkpoint", help="a qmlp checkpoint (float, converted, quantized or QAT)")
    g.add_argument("--pretrained-file", metavar="PATH",
                   help="timm weights for --model (.pth / .safetensors / .bin), = pretrained_cfg_overlay=dict(file=)")
    g.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="timm.create_model keywords, e.g. img_size=64 in_chans=1 num_classes=10")


def add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data source")
    g.add_argument("--data", default=None,
                   help="fashion-mnist (default), or an ImageFolder root with train/ and val/ "
                        "(or one split folder) of <class>/<image> (class = wnid, integer label or name)")
    g.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files (else $QMLP_DATA_DIR, "
                                      "the Debian package, the download cache)")
    g.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="override the model's")
    g.add_argument("--mean", type=float, nargs="+", help="normalisation mean (one value or one per channel)")
    g.add_argument("--std", type=float, nargs="+", help="normalisation std")
    g.add_argument("--crop-pct", type=float, help="eval center-crop fraction (timm)")
    g.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"), help="resize interpolation")
    g.add_argument("--convert-channels", action="store_true",
                   help="convert images to the model's channel count (gray <-> RGB) instead of refusing")


def model_source(args, model_default=None):
    from .sources import ModelSource, parse_model_kwargs

    kwargs = parse_model_kwargs(getattr(args, "model_kwargs", [])) or getattr(args, "config_model_kwargs", {})
    return ModelSource(name=args.model or model_default, checkpoint=args.checkpoint,
                       pretrained_file=getattr(args, "pretrained_file", None), model_kwargs=kwargs)


def data_source(args, default: str | None = None):
    from .sources import FASHION_MNIST, DataOptions, DataSource

    opts = DataOptions(input_size=tuple(args.input_size) if args.input_size else None,
                       mean=tuple(args.mean) if args.mean else None, std=tuple(args.std) if args.std else None,
                       crop_pct=args.crop_pct, interpolation=args.interpolation,
                       convert_channels=args.convert_channels)
    return DataSource(spec=args.data or default or FASHION_MNIST, data_dir=args.data_dir, options=opts)


def add_training_options(p: argparse.ArgumentParser, epochs: int = 15, lr: float = 2e-3,
                         warmup_epochs: float = 1.0) -> None:
    """The TrainConfig knobs shared by ``qmlp train`` and ``qmlp finetune``."""
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=128, help="global batch (split over torchrun processes)")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY", help="EMA decay, 0 = off")
    p.add_argument("--ema-warmup", action="store_true",
                   help="EMA warm-up (timm ModelEmaV3 use_warmup): a short average early, DECAY later")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto")
    p.add_argument("--train-subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--distill-weight", type=float, default=0.5)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pth")


def add_device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--workers", type=int, help="DataLoader workers (default: none for in-memory data, else a "
                                                 "share of the cores)")


def _train_options(args) -> dict:
    return dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, ema_decay=args.ema,
                ema_warmup=args.ema_warmup,
                seed=args.seed, amp=args.amp, train_subset=args.train_subset, test_subset=args.test_subset,
                distill_weight=args.distill_weight, device=args.device,
                workers=-1 if args.workers is None else args.workers)


def _publish(args, name: str, result: dict, base=None) -> None:
    from .training.release import release

    entry = release(name, Path(args.out) / "model.pth", result,
                    command="qmlp " + " ".join(shlex.quote(a) for a in sys.argv[1:]), base=base)
    _log(f"recorded {name} in the zoo ({entry.checkpoint})")


def _summary(result: dict) -> dict:
    return {k: result[k] for k in ("top1", "epoch", "train_time_s", "params", "recipe") if k in result}


# ---------------------------------------------------------------- train / finetune / convert
def cmd_train(args) -> dict:
    from .training import TrainConfig, train

    data = data_source(args)
    cfg = TrainConfig(model=args.model, out=args.out, data_dir=args.data_dir, data=data.to_json(),
                      init_from=args.init_from, grow_from=args.grow_from, teacher=args.teacher, pretrained_file=args.pretrained_file,
                      model_kwargs=model_source(args).model_kwargs, **_train_options(args))
    result = train(cfg, resume=args.resume, log=_log)
    if args.zoo and result:
        _publish(args, args.model, result, base=args.base)
    return _summary(result)


def cmd_finetune(args) -> dict:
    from .training import finetune_config, train

    cfg = finetune_config(args.converted, args.out, args.teacher, data_source(args), **_train_options(args))
    result = train(cfg, resume=args.resume, log=_log)
    if args.zoo and result:
        from .checkpoint import read_checkpoint

        _publish(args, cfg.model, result, base=read_checkpoint(args.converted).get("base"))
    return _summary(result)


def cmd_convert(args) -> dict:
    from .convert import convert_checkpoint
    from .models.surgery import QmlpConfig

    cfg = QmlpConfig(layernorm=not args.no_layernorm, activation=None if args.activation == "none" else args.activation,
                     token_groups=args.token_groups, clip=tuple(args.clip))
    return convert_checkpoint(model_source(args), data_source(args), args.out, cfg, limit=args.limit,
                              batch_size=args.batch_size)


# ---------------------------------------------------------------- eval
def cmd_eval(args) -> dict:
    """Top-1 of a float or quantized checkpoint, of a model quantized on the fly (--recipe), or of an IR."""
    from .evaluation import evaluate
    from .sources import subset

    data = data_source(args)
    if args.ir:
        from .export import ir_dataset, ir_top1

        if args.recipe or args.config or args.model or args.checkpoint:
            raise ValueError("--ir evaluates the IR as it is: drop --model/--checkpoint/--recipe/--config")
        val = subset(ir_dataset(args.ir, data), args.limit)
        return {"ir": args.ir, "data": data.describe("val"), **ir_top1(args.ir, val, batch_size=args.batch_size)}
    quantizing = bool(args.recipe or args.config)
    loaded = model_source(args).load(float_for="qmlp eval --recipe" if quantizing else "")
    result = {"model": loaded.arch, "data": data.describe("val"), "reference_top1": loaded.meta.get("top1")}
    model = loaded.model
    val = subset(data.dataset("val", model), args.limit)
    if quantizing:
        from .quantization.workflow import RecipeChoice, quantize_source

        q = quantize_source(loaded, data, RecipeChoice.resolve(args.recipe, args.config), args.calibration_size)
        model = q.model
        result.update(recipe=q.recipe.name, ptq_time_s=round(q.seconds, 2))
    return {**result, **evaluate(model, val, batch_size=args.batch_size, progress=not args.json)}


# ---------------------------------------------------------------- quantize / qat
def cmd_quantize(args) -> dict:
    from .pipeline import quantize_to_dir
    from .quantization.workflow import RecipeChoice

    if args.list_recipes:
        from .quantization.recipes import list_recipes, load_recipe

        from .quantization.auto import TARGETS

        return {**{name: load_recipe(name).description for name in list_recipes()},
                **{f"auto:{t}": f"searched for the model on its calibration data: every Linear inside the blocks "
                                f"{t[:2]} weights, {t[2:]} inputs (quantization.auto)" for t in TARGETS}}
    if not args.out:
        raise ValueError("give --out DIR: the folder for quantized.pth and ir/model.xml")
    if args.ir and (args.model or args.checkpoint or getattr(args, "pretrained_file", None)):
        raise ValueError("--ir is the model to quantize: drop --model/--checkpoint/--pretrained-file")
    if args.ir and args.no_export:
        raise ValueError("--ir writes the quantized IR itself: drop --no-export")
    choice = RecipeChoice.resolve(args.recipe, args.config)
    cfg = choice.config
    if cfg is not None:
        _from_config(args, cfg)
    if args.ir:
        from .pipeline import quantize_ir_to_dir

        return quantize_ir_to_dir(args.ir, data_source(args), choice, args.out, calibration_size=args.calibration_size,
                                  limit=args.limit, force=args.force, progress=not args.json).to_json()
    loaded = model_source(args).load(float_for="qmlp quantize")
    run = quantize_to_dir(loaded, data_source(args), choice, args.out, calibration_size=args.calibration_size,
                          limit=args.limit, export=not args.no_export, force=args.force, progress=not args.json,
                          w4_kernels=args.w4_kernels)
    return run.to_json()


def _from_config(args, cfg) -> None:
    """What an NNCF-style config names (model, checkpoint, model kwargs, data) fills the options not given."""
    args.model, args.checkpoint = args.model or cfg.model, args.checkpoint or cfg.checkpoint
    if args.checkpoint and "://" in args.checkpoint:
        raise ValueError(f"config weights {args.checkpoint!r} is a URL; download it and pass --checkpoint or "
                         f"--pretrained-file (no downloads happen here)")
    args.config_model_kwargs = dict(cfg.model_kwargs or {})  # --model-kwargs win
    if args.data is None and cfg.data:
        args.data = cfg.data
    if args.data_dir is None and cfg.data_dir:
        args.data_dir = cfg.data_dir


def cmd_qat(args) -> dict:
    from .checkpoint import load_model
    from .quantization.qat import QATSettings, qat

    if args.config:  # an NNCF 2.x config's training keys (epochs, batch_size, lr...) fill unset options
        from .quantization.config import load_config

        training = load_config(args.config).training
        for key in ("epochs", "batch_size", "lr", "seed", "workers"):
            if key in training and getattr(args, key, None) is None:
                setattr(args, key, training[key])
    d = QATSettings()
    for key, default in (("epochs", d.epochs), ("lr", d.lr), ("batch_size", d.batch_size), ("seed", 0),
                         ("workers", -1)):
        if getattr(args, key) is None:
            setattr(args, key, default)
    quantized, meta = load_model(args.checkpoint)
    if "nncf_config" not in meta:
        raise ValueError(f"{args.checkpoint} is not quantized: make one with `qmlp quantize`")
    teacher = args.teacher or meta.get("model_source") or meta.get("source")
    if isinstance(teacher, str) and not Path(teacher).is_file():
        from .zoo import get_entry

        teacher = str(get_entry(teacher).checkpoint)
    data = data_source(args, default=(meta.get("data") or {}).get("spec"))
    settings = QATSettings(epochs=args.epochs, lr=args.lr, warmup_epochs=args.warmup_epochs,
                           batch_size=args.batch_size, distill_weight=args.distill_weight,
                           train_subset=args.train_subset)
    cfg = settings.train_config(meta["arch"], args.out, teacher, seed=args.seed, data_dir=args.data_dir,
                                data=data.to_json(), test_subset=args.test_subset, init_from=args.checkpoint,
                                device=args.device, workers=args.workers)
    result = qat(quantized, cfg, resume=args.resume, log=_log)
    return {k: result[k] for k in ("top1", "epoch", "train_time_s") if k in result} | {"recipe": meta.get("recipe")}


# ---------------------------------------------------------------- analyze
def cmd_analyze(args) -> dict:
    from .analysis import analyze
    from .sources import ModelSource

    if not args.out and not args.suggest_recipe:
        raise ValueError("give --out DIR (the report) and/or --suggest-recipe FILE")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")
    if args.out and Path(args.out).is_dir() and any(Path(args.out).iterdir()) and not args.force:
        raise ValueError(f"--out {args.out} is not empty; pass --force to replace it")
    loaded = model_source(args).load(float_for="qmlp analyze")
    data = data_source(args)
    compare = None
    if args.compare:
        is_file = Path(args.compare).is_file()
        compare = ModelSource(name=None if is_file else args.compare,
                              checkpoint=args.compare if is_file else None).load(float_for="qmlp analyze --compare")
    result = analyze(loaded.model, data, args.out, name=loaded.source.describe(),
                     compare=compare.model if compare else None,
                     compare_name=compare.source.describe() if compare else "",
                     calibration_size=args.calibration_size, eval_size=args.eval_size, seed=args.seed,
                     max_minutes=args.max_minutes, per_site=not args.no_per_site,
                     suggest=args.target if (args.suggest_recipe or not args.no_suggest) else None,
                     suggest_path=args.suggest_recipe)
    d = {"model": result.model, "seconds": round(result.seconds, 1),
         "files": {k: str(v) for k, v in result.files.items()}}
    if result.sensitivity is not None and result.sensitivity.groups:
        d["most_sensitive_groups"] = [{"group": r.name, "best4": r.best4, **(r.best4_metrics() or {})}
                                      for r in result.sensitivity.groups[:5]]
    if result.suggestion is not None:
        d["suggestion_heldout"] = result.suggestion.metrics.to_dict()
    return d


# ---------------------------------------------------------------- export / zoo
def cmd_export(args) -> dict:
    from .export.pipeline import export_model
    from .export.prepare import FP32

    result = export_model(model_source(args), args.out, recipe=args.recipe or FP32, data=data_source(args),
                          calibration_size=args.calibration_size, random_calibration=args.random_calibration,
                          batch=args.batch, dynamic_batch=args.dynamic_batch, ovms_repo=args.ovms_repo,
                          ovms_name=args.ovms_name, ovms_version=args.ovms_version, force=args.force,
                          evaluate=args.evaluate, limit=args.limit, progress=not args.json,
                          w4_kernels=args.w4_kernels)
    _log(f"wrote {result.xml}")
    return result.to_json()


def cmd_zoo(args) -> dict | list:
    from .zoo import list_entries

    entries = [e.to_json() for e in list_entries()]
    if args.json:
        return entries
    print("| model | family | params | epochs | train time | top-1 | curve (top-1 % per epoch) |")
    print("|---|---|---:|---:|---:|---:|---|")
    for e in entries:
        curve = e["extra"].get("curve_top1", [])
        shown = curve if len(curve) <= 6 else curve[:2] + [None] + curve[-3:]
        print(f"| {e['name']} | {e['family']} | {e['params']:,} | {e['epochs']} | "
              f"{e['train_time_s'] / 60:.0f} min | {100 * e['top1']:.2f} % | "
              + " ".join("…" if v is None else f"{100 * v:.1f}" for v in shown) + " |")
    return entries


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .models.qmlp_blocks import ACTIVATIONS
    from .quantization.qat import QATSettings

    p = argparse.ArgumentParser(prog="qmlp", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    parsers = []

    def new(name, help, func, model=True, data=True, device=False, required_name=False):
        s = sub.add_parser(name, help=help)
        s.set_defaults(func=func)
        if model:
            add_model_options(s, required_name)
        if data:
            add_data_options(s)
        if device:
            add_device_options(s)
        parsers.append(s)
        return s

    t = new("train", "train a model (torchrun-ready; CUDA when present)", cmd_train, device=True, required_name=True)
    t.add_argument("--out", required=True, help="run folder (last.pth for --resume, model.pth)")
    add_training_options(t)
    t.add_argument("--init-from", help="checkpoint to start from (fine-tuning)")
    t.add_argument("--grow-from", metavar="CHECKPOINT",
                   help="start from a shallower model of the same family and width: its blocks are stacked, "
                        "residual branches scaled by 1/repeats (progressive stacking, qmlp_nncf.models.depth)")
    t.add_argument("--teacher", help="checkpoint of a float teacher for distillation")
    t.add_argument("--zoo", action="store_true", help="copy the result into the zoo and record it")
    t.add_argument("--base", help="with --zoo: the zoo model this one derives from")

    e = new("eval", "top-1 of a model (or an IR, or a model quantized on the fly) on the val split", cmd_eval)
    e.add_argument("--limit", type=int, default=0, help="evaluate the first N val images only")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--recipe", help="quantize with this recipe first (calibration on the train split)")
    e.add_argument("--config", help="quantize with this NNCF-style config first")
    e.add_argument("--calibration-size", type=int, default=0, help="with --recipe: calibration images")
    e.add_argument("--ir", help="evaluate an OpenVINO IR (.xml) instead of a torch model")

    new("zoo", "list the committed models and their reference top-1", cmd_zoo, model=False, data=False)

    c = new("convert", "convert a base model to Q-MLP (exact-part check, top-1 before fine-tuning)", cmd_convert)
    c.add_argument("--out", required=True, help="converted checkpoint to write")
    c.add_argument("--activation", choices=(*ACTIVATIONS, "none"), default="relu6", help="none keeps GELU")
    c.add_argument("--clip", type=float, nargs=2, default=(0.0, 6.0), metavar=("LO", "HI"),
                   help="clip range (clip) or lower bound and initial upper bound (learnable_clip)")
    c.add_argument("--token-groups", type=int, default=4, metavar="G")
    c.add_argument("--no-layernorm", action="store_true", help="keep ResMLP's Affine norms")
    c.add_argument("--limit", type=int, default=1000, help="val images for the checks")
    c.add_argument("--batch-size", type=int, default=256)

    f = new("finetune", "fine-tune a converted model with distillation from its base (torchrun-ready)",
            cmd_finetune, model=False, device=True)
    f.add_argument("--converted", required=True, help="checkpoint written by `qmlp convert`")
    f.add_argument("--teacher", help="base checkpoint or zoo name (default: the base recorded by convert)")
    f.add_argument("--out", required=True, help="run folder (last.pth for --resume, model.pth)")
    add_training_options(f, epochs=5, lr=5e-4, warmup_epochs=0.5)
    f.add_argument("--zoo", action="store_true", help="copy the result into the zoo and record it (base = teacher)")

    q = new("quantize", "post-training quantization with a recipe or an NNCF-style config, then evaluate "
                        "and export", cmd_quantize)
    q.add_argument("--recipe", help="a recipe name (--list-recipes) or a recipe .json path")
    q.add_argument("--config", help="NNCF-style JSON config (docs/config.md); may name the model, data and recipe")
    q.add_argument("--ir", metavar="MODEL_XML", help="quantize this float OpenVINO IR instead of a torch model, on "
                                                    "NNCF's OpenVINO backend (writes ir/model.xml and report.json)")
    q.add_argument("--out", help="output folder: quantized.pth and ir/model.xml (required)")
    q.add_argument("--list-recipes", action="store_true", help="print every recipe with its description and exit")
    q.add_argument("--calibration-size", type=int, default=0, help="calibration images (default: the recipe's)")
    q.add_argument("--limit", type=int, default=0, help="evaluate on the first N val images only")
    q.add_argument("--no-export", action="store_true", help="skip the OpenVINO IR export")
    q.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    q.add_argument("--w4-kernels", choices=W4_KERNELS, default="int8", help=W4_HELP)

    n = new("analyze", "why a model is hard to quantize: ranges, sensitivity, figures, report.html, and the "
                       "recipe that follows", cmd_analyze)
    n.add_argument("--out", help="report folder: report.html, report.md, analysis.json, *.png")
    n.add_argument("--compare", metavar="MODEL", help="a second model (zoo/timm name or checkpoint) whose ranges "
                                                      "are drawn beside (e.g. the Q-MLP model of a base model)")
    n.add_argument("--suggest-recipe", metavar="FILE", help="write the suggested recipe (JSON, for --recipe FILE)")
    n.add_argument("--target", choices=("w4a4", "w4a8", "w8a8"), default="w4a4", help="bit budget of the recipe")
    n.add_argument("--no-suggest", action="store_true", help="skip the recipe search (sensitivity only)")
    n.add_argument("--calibration-size", type=int, default=300, help="train images for the statistics")
    n.add_argument("--eval-size", type=int, default=500, help="held-out train images for the sensitivity")
    n.add_argument("--max-minutes", type=float, default=20.0, help="bound on the sweeps and the search")
    n.add_argument("--no-per-site", action="store_true", help="role groups only (faster on deep models)")
    n.add_argument("--seed", type=int, default=0, help="the draw of calibration and held-out images")
    n.add_argument("--force", action="store_true", help="replace a non-empty --out")

    a = new("qat", "quantization-aware fine-tuning of a `qmlp quantize` checkpoint (torchrun-ready)", cmd_qat,
            model=False, device=True)
    a.add_argument("--checkpoint", required=True, help="quantized.pth written by `qmlp quantize`")
    a.add_argument("--teacher", help="float teacher checkpoint or zoo name (default: the quantized model's source)")
    a.add_argument("--out", required=True)
    d = QATSettings()
    a.add_argument("--config", help="NNCF 2.x-style config: its epochs, batch_size, optimizer.base_lr, seed, workers")
    a.add_argument("--epochs", type=int, help=f"default {d.epochs} (or the config's)")
    a.add_argument("--lr", type=float, help=f"default {d.lr} (or the config's optimizer.base_lr)")
    a.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    a.add_argument("--batch-size", type=int, help=f"default {d.batch_size} (or the config's)")
    a.add_argument("--distill-weight", type=float, default=d.distill_weight)
    a.add_argument("--seed", type=int)
    a.add_argument("--train-subset", type=int, default=d.train_subset)
    a.add_argument("--test-subset", type=int, default=0)
    a.add_argument("--resume", action="store_true")

    x = new("export", "export a model (float, or quantized with --recipe) to OpenVINO IR", cmd_export)
    x.add_argument("--recipe", help="quantization recipe (default fp32 = no quantization)")
    x.add_argument("--out", help="folder for model.xml/model.bin")
    x.add_argument("--ovms-repo", help="OpenVINO Model Server repository: writes <repo>/<name>/<version>/")
    x.add_argument("--ovms-name", help="model name in the OVMS repository")
    x.add_argument("--ovms-version", type=int, default=1)
    x.add_argument("--batch", type=int, default=1, help="static batch size of the IR")
    x.add_argument("--dynamic-batch", action="store_true", help="leave the batch dimension dynamic")
    x.add_argument("--force", action="store_true", help="replace an existing IR")
    x.add_argument("--w4-kernels", choices=W4_KERNELS, default="int8", help=W4_HELP)
    x.add_argument("--calibration-size", type=int, default=0,
                   help="calibration images for --recipe (default: the recipe's, as qmlp quantize)")
    x.add_argument("--random-calibration", action="store_true",
                   help="calibrate on random images (speed measurements only; labelled so in rt_info)")
    x.add_argument("--evaluate", action="store_true",
                   help="store the IR's val top-1 and its agreement with torch in the metadata")
    x.add_argument("--limit", type=int, default=0, help="with --evaluate: the first N val images only")

    for s in parsers:
        s.add_argument("--json", action="store_true", help="print the result as one JSON object")
        s.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
        if not any(a.dest == "data_dir" for a in s._actions):
            s.add_argument("--data-dir", help=argparse.SUPPRESS)
    return p


ERRORS = (ValueError, KeyError, DataError, CheckpointError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from .benchmark.console import nncf_output_to_stderr

    try:
        with nncf_output_to_stderr():  # NNCF's progress bars print to stdout: keep stdout for the result
            result = args.func(args)
    except ERRORS as e:
        if os.environ.get("QMLP_DEBUG"):  # the traceback, for bug reports
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(json.dumps({"error": msg}) if getattr(args, "json", False) else f"qmlp {args.command}: error: {msg}",
              file=sys.stdout if getattr(args, "json", False) else sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: only global rank 0 reports
        return 0
    if args.json:
        print(json.dumps(result))
    elif args.command != "zoo":
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
