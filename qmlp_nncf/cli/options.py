"""Options shared by the ``qmlp`` sub-commands, and the model / data sources they describe."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

W4_HELP = ("how the IR runs the 4-bit weights of a W4A8/W4A4 model: int8 (default; int8 GEMM kernels, the weights "
           "stay 4-bit on disk) or i4 (OpenVINO's weight-decompression kernels: slower on VNNI CPUs, and on AVX2 "
           "CPUs they skip some activation quantizers)")


@dataclass
class Shown:
    """A command's result with its own text for the terminal; ``--json`` prints ``data``."""
    data: object
    text: str


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


def model_source(args, model_default=None, config=None):
    """The ``ModelSource`` the options name; an NNCF-style ``config`` (``quantization.recipes.config``) fills the model,
    checkpoint and model kwargs not given."""
    from ..sources import ModelSource, parse_model_kwargs

    name = args.model or (config.model if config is not None else None) or model_default
    checkpoint = args.checkpoint or (config.checkpoint if config is not None else None)
    if config is not None and checkpoint and "://" in checkpoint:
        raise ValueError(f"config weights {checkpoint!r} is a URL; download it and pass --checkpoint or "
                         f"--pretrained-file (no downloads happen here)")
    kwargs = parse_model_kwargs(getattr(args, "model_kwargs", [])) or (
        dict(config.model_kwargs or {}) if config is not None else {})  # --model-kwargs win
    return ModelSource(name=name, checkpoint=checkpoint, pretrained_file=getattr(args, "pretrained_file", None),
                       model_kwargs=kwargs)


def data_source(args, default: str | None = None, config=None, check: tuple[str, ...] = ()):
    """The ``DataSource`` the options name (a ``config`` fills --data / --data-dir when not given); ``check``: the
    splits that must be there, checked now, before any model is built."""
    from ..sources import FASHION_MNIST, DataOptions, DataSource

    opts = DataOptions(input_size=tuple(args.input_size) if args.input_size else None,
                       mean=tuple(args.mean) if args.mean else None, std=tuple(args.std) if args.std else None,
                       crop_pct=args.crop_pct, interpolation=args.interpolation,
                       convert_channels=args.convert_channels)
    spec = args.data or (config.data if config is not None else None) or default or FASHION_MNIST
    data_dir = args.data_dir or (config.data_dir if config is not None else None)
    data = DataSource(spec=spec, data_dir=data_dir, options=opts)
    data.check(*check)
    return data
