"""``qmlp convert`` and ``qmlp finetune``: base model -> Q-MLP checkpoint -> distillation fine-tuning."""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import timm
import torch
from torch.utils.data import DataLoader, Subset


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@torch.no_grad()
def _logits(model: torch.nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    outs, labels = [], []
    for x, y in loader:
        outs.append(model(x))
        labels.append(y)
    return torch.cat(outs), torch.cat(labels)


def _top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


# ---------------------------------------------------------------- convert
def cmd_convert(args) -> dict:
    """Convert, check the exact part, measure top-1 before fine-tuning, write the checkpoint."""
    from ..checkpoint import create_model, save_checkpoint
    from ..cli import eval_dataset, resolve_model
    from ..zoo import get_entry
    from .surgery import QmlpConfig, to_qmlp

    activation = None if args.activation == "none" else args.activation
    cfg = QmlpConfig(layernorm=not args.no_layernorm, activation=activation, token_groups=args.token_groups,
                     clip=tuple(args.clip))
    base, meta = resolve_model(args.model, args.checkpoint, float_for="qmlp convert")
    arch = meta.get("arch") or args.model
    name = f"qmlp_{arch}"
    if arch.startswith("qmlp_"):
        raise ValueError(f"{arch!r} is already a Q-MLP model")
    if name not in timm.list_models("qmlp_*"):
        raise ValueError(f"no registered Q-MLP variant {name!r} for base {arch!r}; convert with "
                         f"qmlp_nncf.models.surgery.to_qmlp in Python, or register {name} (see models/qmlp.py)")
    base_ckpt = args.checkpoint
    if base_ckpt is None and "note" not in meta:
        base_ckpt = str(get_entry(arch).checkpoint)
    if args.limit < 1:
        raise ValueError(f"--limit must be positive, got {args.limit}")
    data = eval_dataset(args.data, base, args.data_dir)
    loader = DataLoader(Subset(data, range(min(args.limit, len(data)))), batch_size=args.batch_size)

    ref, labels = _logits(base, loader)
    exact = copy.deepcopy(base)
    to_qmlp(exact, layernorm=False, activation=None, token_groups=cfg.token_groups)
    exact_diff = float((_logits(exact, loader)[0] - ref).abs().max())
    model = copy.deepcopy(base)
    report = to_qmlp(model, **vars(cfg))
    out = _logits(model, loader)[0]
    _log(str(report))

    model_kwargs = {**meta.get("model_kwargs", {}), **cfg.model_kwargs()}
    create_model(name, **model_kwargs).load_state_dict(model.state_dict())  # the checkpoint must load
    result = {"model": name, "base": arch, "images": len(labels),
              "exact_part_max_abs_diff": exact_diff, "logits_max_abs_diff": float((out - ref).abs().max()),
              "base_top1": _top1(ref, labels), "top1_before_finetune": _top1(out, labels),
              "top1_agreement": float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
              "params_base": report.params_before, "params": report.params_after}
    save_checkpoint(args.out, {"state_dict": model.state_dict(), "arch": name, "model_kwargs": model_kwargs,
                               "base": arch, "base_checkpoint": base_ckpt, "conversion": report.to_json(),
                               "top1": result["top1_before_finetune"], "test_images": len(labels),
                               "params": report.params_after, **{k: result[k] for k in (
                                   "exact_part_max_abs_diff", "logits_max_abs_diff", "base_top1")}})
    _log(f"wrote {args.out}")
    return result


# ---------------------------------------------------------------- finetune
def cmd_finetune(args) -> dict:
    """``qmlp train`` with init = the converted checkpoint and teacher = its base model."""
    from ..checkpoint import read_checkpoint
    from ..cli import cmd_train
    from ..zoo import get_entry
    from . import family_of

    converted = read_checkpoint(args.converted)
    name, base = converted.get("arch", ""), converted.get("base")
    if not name.startswith("qmlp_"):
        raise ValueError(f"{args.converted} is not a Q-MLP checkpoint (arch {name!r}); make one with `qmlp convert`")
    teacher = args.teacher or converted.get("base_checkpoint")
    if teacher is None:
        raise ValueError(f"{args.converted} does not name its base checkpoint: pass --teacher")
    if not Path(teacher).is_file():
        teacher = str(get_entry(teacher).checkpoint)  # a zoo name
    teacher_arch = read_checkpoint(teacher).get("arch")
    if teacher_arch and family_of(teacher_arch) != family_of(name):
        raise ValueError(f"teacher {teacher_arch!r} is not of the same family as {name!r}")
    train_args = argparse.Namespace(**{**vars(args), "model": name, "init_from": args.converted,
                                       "teacher": teacher, "base": base or teacher_arch})
    return cmd_train(train_args)


def add_commands(sub) -> list[argparse.ArgumentParser]:
    """Add ``convert`` and ``finetune`` to the ``qmlp`` sub-parsers; returns them."""
    from ..cli import add_training_options
    from .qmlp_blocks import ACTIVATIONS

    c = sub.add_parser("convert", help="convert a base model to Q-MLP (exact-part check, top-1 before fine-tuning)")
    c.add_argument("--model", help="zoo or timm model name of the base (or the arch for a bare --checkpoint)")
    c.add_argument("--checkpoint", help="base checkpoint file")
    c.add_argument("--out", required=True, help="converted checkpoint to write")
    c.add_argument("--activation", choices=(*ACTIVATIONS, "none"), default="relu6", help="none keeps GELU")
    c.add_argument("--clip", type=float, nargs=2, default=(0.0, 6.0), metavar=("LO", "HI"),
                   help="clip range (clip) or lower bound and initial upper bound (learnable_clip)")
    c.add_argument("--token-groups", type=int, default=4, metavar="G")
    c.add_argument("--no-layernorm", action="store_true", help="keep ResMLP's Affine norms")
    c.add_argument("--data", default="fashion-mnist", help="fashion-mnist, or an ImageFolder path")
    c.add_argument("--limit", type=int, default=1000, help="test images for the checks")
    c.add_argument("--batch-size", type=int, default=256)
    c.set_defaults(func=cmd_convert)

    f = sub.add_parser("finetune", help="fine-tune a converted model with distillation from its base "
                                        "(torchrun-ready)")
    f.add_argument("--converted", required=True, help="checkpoint written by `qmlp convert`")
    f.add_argument("--teacher", help="base checkpoint or zoo name (default: the one recorded by convert)")
    f.add_argument("--out", required=True, help="run folder (last.pth for --resume, model.pth)")
    add_training_options(f, epochs=5, lr=5e-4, warmup_epochs=0.5)
    f.add_argument("--zoo", action="store_true", help="copy the result into the zoo and record it (base = teacher)")
    f.set_defaults(func=cmd_finetune)
    return [c, f]
