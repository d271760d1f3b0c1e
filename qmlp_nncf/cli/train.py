"""``qmlp train``, ``finetune``, ``convert`` and ``qat``: the commands that make or change a model's weights."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .options import add_training_options, data_source, log, model_source


def _train_options(args) -> dict:
    return dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, ema_decay=args.ema,
                ema_warmup=args.ema_warmup,
                seed=args.seed, amp=args.amp, train_subset=args.train_subset, test_subset=args.test_subset,
                distill_weight=args.distill_weight, device=args.device,
                workers=-1 if args.workers is None else args.workers)


def _publish(args, name: str, result: dict, base=None) -> None:
    from ..training.release import release

    entry = release(name, Path(args.out) / "model.pth", result,
                    command="qmlp " + " ".join(shlex.quote(a) for a in sys.argv[1:]), base=base)
    log(f"recorded {name} in the zoo ({entry.checkpoint})")


def _summary(result: dict) -> dict:
    return {k: result[k] for k in ("top1", "epoch", "train_time_s", "params", "recipe") if k in result}


def _existing(path: str | None, option: str) -> None:
    if path and not Path(path).exists():
        raise FileNotFoundError(f"{option} {path} does not exist")


def cmd_train(args) -> dict:
    from ..training import TrainConfig, train

    data = data_source(args, check=("train", "val"))
    for path, option in ((args.init_from, "--init-from"), (args.grow_from, "--grow-from"),
                         (args.pretrained_file, "--pretrained-file")):
        _existing(path, option)
    cfg = TrainConfig(model=args.model, out=args.out, data_dir=args.data_dir, data=data.to_json(),
                      init_from=args.init_from, grow_from=args.grow_from, teacher=args.teacher,
                      pretrained_file=args.pretrained_file, model_kwargs=model_source(args).model_kwargs,
                      **_train_options(args))
    result = train(cfg, resume=args.resume, log=log)
    if args.zoo and result:
        _publish(args, args.model, result, base=args.base)
    return _summary(result)


def cmd_finetune(args) -> dict:
    from ..training import finetune_config, train

    _existing(args.converted, "--converted")
    cfg = finetune_config(args.converted, args.out, args.teacher, data_source(args, check=("train", "val")),
                          **_train_options(args))
    result = train(cfg, resume=args.resume, log=log)
    if args.zoo and result:
        from ..checkpoint import read_checkpoint

        _publish(args, cfg.model, result, base=read_checkpoint(args.converted).get("base"))
    return _summary(result)


def cmd_convert(args) -> dict:
    from ..convert import convert_checkpoint
    from ..models.surgery import QmlpConfig

    cfg = QmlpConfig(layernorm=not args.no_layernorm, activation=None if args.activation == "none" else args.activation,
                     token_groups=args.token_groups, clip=tuple(args.clip))
    return convert_checkpoint(model_source(args), data_source(args, check=("train", "val")), args.out, cfg,
                              limit=args.limit, batch_size=args.batch_size)


def cmd_qat(args) -> dict:
    from ..checkpoint import load_model
    from ..training.qat import QATSettings, qat, qat_inputs

    given = qat_inputs(args.checkpoint, args.teacher, args.config, epochs=args.epochs, lr=args.lr,
                       batch_size=args.batch_size, seed=args.seed, workers=args.workers)
    data = data_source(args, default=(given.meta.get("data") or {}).get("spec"), check=("train", "val"))
    quantized, meta = load_model(args.checkpoint)
    o = given.options
    settings = QATSettings(epochs=o["epochs"], lr=o["lr"], warmup_epochs=args.warmup_epochs,
                           batch_size=o["batch_size"], distill_weight=args.distill_weight,
                           train_subset=args.train_subset)
    cfg = settings.train_config(meta["arch"], args.out, given.teacher, seed=o["seed"], data_dir=args.data_dir,
                                data=data.to_json(), test_subset=args.test_subset, init_from=args.checkpoint,
                                device=args.device, workers=o["workers"])
    result = qat(quantized, cfg, resume=args.resume, log=log)
    return {k: result[k] for k in ("top1", "epoch", "train_time_s") if k in result} | {"recipe": meta.get("recipe")}


def add_train(new) -> None:
    """``qmlp train``; ``new`` is ``build_parser``'s sub-parser factory."""
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


def add_convert(new) -> None:
    """``qmlp convert``; ``new`` is ``build_parser``'s sub-parser factory."""
    from ..models.qmlp_blocks import ACTIVATIONS

    c = new("convert", "convert a base model to Q-MLP (exact-part check, top-1 before fine-tuning)", cmd_convert)
    c.add_argument("--out", required=True, help="converted checkpoint to write")
    c.add_argument("--activation", choices=(*ACTIVATIONS, "none"), default="relu6", help="none keeps GELU")
    c.add_argument("--clip", type=float, nargs=2, default=(0.0, 6.0), metavar=("LO", "HI"),
                   help="clip range (clip) or lower bound and initial upper bound (learnable_clip)")
    c.add_argument("--token-groups", type=int, default=4, metavar="G")
    c.add_argument("--no-layernorm", action="store_true", help="keep ResMLP's Affine norms")
    c.add_argument("--limit", type=int, default=1000, help="val images for the checks")
    c.add_argument("--batch-size", type=int, default=256)


def add_finetune(new) -> None:
    """``qmlp finetune``; ``new`` is ``build_parser``'s sub-parser factory."""
    f = new("finetune", "fine-tune a converted model with distillation from its base (torchrun-ready)",
            cmd_finetune, model=False, device=True)
    f.add_argument("--converted", required=True, help="checkpoint written by `qmlp convert`")
    f.add_argument("--teacher", help="base checkpoint or zoo name (default: the base recorded by convert)")
    f.add_argument("--out", required=True, help="run folder (last.pth for --resume, model.pth)")
    add_training_options(f, epochs=5, lr=5e-4, warmup_epochs=0.5)
    f.add_argument("--zoo", action="store_true", help="copy the result into the zoo and record it (base = teacher)")


def add_qat(new) -> None:
    """``qmlp qat``; ``new`` is ``build_parser``'s sub-parser factory."""
    from ..training.qat import QATSettings

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
