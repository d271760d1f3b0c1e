"""Model and data sources: what every command, benchmark and the demo load their model and images from.

A :class:`ModelSource` is a zoo name, a timm name (with timm-style ``model_kwargs`` and optionally a
timm weights file, ``pretrained_cfg_overlay=dict(file=...)``), or a project checkpoint (float,
converted, quantized or QAT). A :class:`DataSource` is Fashion-MNIST (the IDX files) or an
ImageFolder root with ``train/`` and ``val/`` (or a single split folder); folder images go through
timm's ``resolve_data_config`` / ``create_transform`` for the model, overridable with
:class:`DataOptions` (timm validate.py's ``--input-size --mean --std --crop-pct --interpolation``).

Splits are ``"train"`` (calibration, training) and ``"val"`` (evaluation; Fashion-MNIST's test split).
"""
from __future__ import annotations

import ast
import inspect
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import timm
import torch
from torch.utils.data import Dataset, Subset

from . import models  # noqa: F401  (registers our models with timm)
from .checkpoint import CheckpointError, create_model, load_model, require_float
from .data import DataError, FashionMNIST, ImageFolderSplit, calibration_subset, image_folder_classes

FASHION_MNIST = "fashion-mnist"
SPLITS = ("train", "val")
VAL_NAMES = ("val", "validation", "test")


# ---------------------------------------------------------------- models
def parse_model_kwargs(items: Optional[list[str]]) -> dict:
    """timm's ``--model-kwargs key=value ...``: values are Python literals (``64``, ``(1, 2)``, ``True``)
    or plain strings (``act_layer=relu``)."""
    kwargs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-kwargs: {item!r} is not key=value (e.g. img_size=64 in_chans=1)")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def _model_class_keys(name: str) -> list[str]:
    """The keyword arguments a timm model's class takes (for the unknown-key error)."""
    try:
        cls = type(timm.create_model(name, pretrained=False, num_classes=1))  # cheap: structure only
        return sorted(p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs"))
    except Exception:  # noqa: BLE001 - only for the message
        return []


def _create(name: str, kwargs: dict, **extra) -> torch.nn.Module:
    """``timm.create_model`` with one clear error for an unknown keyword or weights that do not fit."""
    try:
        return create_model(name, **kwargs, **extra)
    except (TypeError, KeyError) as e:
        msg = str(e.args[0]) if e.args else str(e)
        if "unexpected keyword argument" in msg:
            bad = msg.split("argument")[-1].strip(" '\"")
            valid = _model_class_keys(name)
            raise ValueError(f"--model-kwargs: {name} takes no argument {bad!r}"
                             + (f"; valid: {', '.join(valid)}" if valid else "")) from None
        fixed = [k for k in kwargs if k == msg or f"'{k}'" in msg]
        if fixed:  # timm's variant function sets it itself (dict(num_blocks=12, **kwargs))
            raise ValueError(f"--model-kwargs: {name} fixes {fixed[0]!r} itself and cannot take it; choose the "
                             f"variant with the {fixed[0]} you want, or its family's base class") from None
        raise
    except RuntimeError as e:  # timm's load_state_dict(strict=True)
        if "state_dict" not in str(e) and "size mismatch" not in str(e):
            raise
        from .checkpoint import mismatch_summary

        raise CheckpointError(f"weights do not fit {name}{' ' + str(kwargs) if kwargs else ''}: "
                              f"{mismatch_summary(str(e))}") from None


@dataclass
class LoadedModel:
    """A model with what is known of it: ``meta`` holds ``arch``, ``model_kwargs``, ``top1`` (float top-1 on
    its reference data, when known), and for quantized checkpoints ``nncf_config``, ``recipe``, ..."""

    model: torch.nn.Module
    meta: dict
    source: "ModelSource"

    @property
    def arch(self) -> str:
        return self.meta["arch"]

    @property
    def is_quantized(self) -> bool:
        return "nncf_config" in self.meta


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from. ``name``: zoo or timm name (the architecture of a bare ``checkpoint``);
    ``checkpoint``: a project checkpoint (``qmlp train/convert/finetune/quantize/qat``) or a bare state
    dict; ``pretrained_file``: timm weights (.pth / .safetensors / .bin) loaded through timm's pretrained
    path (head and ``in_chans`` adapted as timm does); ``model_kwargs``: ``timm.create_model`` keywords."""

    name: Optional[str] = None
    checkpoint: Optional[str] = None
    pretrained_file: Optional[str] = None
    model_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.checkpoint and self.pretrained_file:
            raise ValueError("give --checkpoint (a qmlp checkpoint) or --pretrained-file (timm weights), not both")
        if self.pretrained_file and not self.name:
            raise ValueError("--pretrained-file needs --model: the timm architecture the weights belong to")
        if not (self.name or self.checkpoint):
            raise ValueError("give --model NAME (a zoo model, see `qmlp zoo`, or a timm model) or --checkpoint PATH")

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_json(cls, d: dict) -> "ModelSource":
        return cls(**d)

    def describe(self) -> str:
        if self.checkpoint:
            return str(self.checkpoint)
        kw = f" {self.model_kwargs}" if self.model_kwargs else ""
        if self.pretrained_file:
            return f"{self.name}{kw} weights {self.pretrained_file}"
        return f"{self.name}{kw}"

    def load(self, float_for: str = "") -> LoadedModel:
        """Build the model (eval mode). ``float_for`` (e.g. ``"--recipe"``): refuse a quantized checkpoint."""
        if self.checkpoint:
            model, meta = load_model(self.checkpoint, arch=self.name, **self.model_kwargs)
            if float_for:
                require_float(meta, self.checkpoint, float_for)
            return LoadedModel(model, meta, self)
        name, kwargs = self.name, dict(self.model_kwargs)
        if self.pretrained_file:
            path = Path(self.pretrained_file)
            if not path.is_file():
                raise FileNotFoundError(f"--pretrained-file {path} does not exist")
            if path.suffix not in (".pth", ".pt", ".safetensors", ".bin", ".ckpt"):
                raise ValueError(f"--pretrained-file {path}: expected .pth, .safetensors or .bin weights")
            model = _create(name, kwargs, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
            meta = {"arch": name, "model_kwargs": kwargs, "pretrained_file": str(path)}
            return LoadedModel(model.eval(), meta, self)
        from .zoo import get_entry

        try:
            entry = get_entry(name)
        except KeyError:
            model = _create(name, kwargs)
            return LoadedModel(model.eval(), {"arch": name, "model_kwargs": kwargs,
                                              "note": "random weights (not in the zoo)"}, self)
        if not kwargs:
            model, meta = load_model(entry.checkpoint)
            return LoadedModel(model, {**meta, "zoo": name}, self)
        model = _create(name, kwargs, pretrained=True)  # timm adapts the head / in_chans to the kwargs
        return LoadedModel(model.eval(), {"arch": name, "model_kwargs": kwargs, "zoo": name}, self)


def model_input_size(model: torch.nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model really takes: its patch embedding's image size and channels when it has one
    (timm's ``pretrained_cfg`` keeps the default 224 even for ``img_size=64``), else ``pretrained_cfg``."""
    stem = getattr(model, "stem", None) or getattr(model, "patch_embed", None)
    img = getattr(stem, "img_size", None)
    proj = getattr(stem, "proj", None)
    chans = getattr(proj, "in_channels", None)
    if img is not None and chans is not None:
        h, w = (img, img) if isinstance(img, int) else tuple(img)
        return int(chans), int(h), int(w)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "input_size" not in cfg:
        raise ValueError(f"{type(model).__name__} has no patch embedding and no timm pretrained_cfg['input_size']: "
                         f"pass --input-size C H W")
    return tuple(int(d) for d in cfg["input_size"])


def num_classes_of(model: torch.nn.Module) -> Optional[int]:
    n = getattr(model, "num_classes", None)
    return int(n) if isinstance(n, int) and n > 0 else None


DATA_CONFIG_KEYS = ("input_size", "mean", "std", "crop_pct", "crop_mode", "interpolation")


@dataclass(frozen=True)
class ModelInfo:
    """What a data source needs of a model: its input size, class count and timm data config
    (``pretrained_cfg``). From a torch model (:meth:`of`) or an exported IR's metadata (:meth:`of_ir`)."""

    input_size: tuple[int, int, int]
    num_classes: Optional[int]
    pretrained_cfg: dict
    model: Optional[torch.nn.Module] = None  # for --input-size checks by a forward pass

    @classmethod
    def of(cls, model) -> "ModelInfo":
        if isinstance(model, ModelInfo):
            return model
        return cls(model_input_size(model), num_classes_of(model), dict(getattr(model, "pretrained_cfg", None) or {}),
                   model)

    @classmethod
    def of_ir(cls, ov_model, metadata: dict) -> "ModelInfo":
        import json

        shape = ov_model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in list(shape)[1:]]
        if len(dims) != 3 or None in dims:
            raise ValueError(f"the IR's input {shape} is not N x C x H x W with static C, H, W")
        out = ov_model.outputs[0].get_partial_shape()
        classes = out[-1].get_length() if out[-1].is_static else None
        cfg = json.loads(metadata["data_config"]) if "data_config" in metadata else {}
        return cls(tuple(dims), classes, cfg)


def data_config_of(model: torch.nn.Module, data: "Optional[DataSource]" = None) -> dict:
    """The timm data config to store with an export (so ``qmlp eval --ir --data`` preprocesses alike)."""
    cfg = (data or DataSource()).data_config(model)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k in DATA_CONFIG_KEYS}


# ---------------------------------------------------------------- data
@dataclass(frozen=True)
class DataOptions:
    """timm validate.py-style overrides of the model's data config; ``None`` keeps the model's value.
    ``convert_channels``: convert every image to the model's channel count (gray <-> RGB) instead of
    refusing a dataset whose images have another one."""

    input_size: Optional[tuple[int, int, int]] = None
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    crop_pct: Optional[float] = None
    interpolation: Optional[str] = None
    convert_channels: bool = False

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v not in (None, False)}

    @classmethod
    def from_json(cls, d: dict) -> "DataOptions":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass(frozen=True)
class DataSource:
    """``spec``: ``fashion-mnist`` or a folder (ImageFolder root with ``train/`` and ``val/``, or one split
    folder with one sub-folder per class). ``data_dir``: where the Fashion-MNIST IDX files are."""

    spec: str = FASHION_MNIST
    data_dir: Optional[str] = None
    options: DataOptions = DataOptions()

    @property
    def is_fashion_mnist(self) -> bool:
        return self.spec.lower().replace("_", "-") in (FASHION_MNIST, "fashionmnist")

    def to_json(self) -> dict:
        d = {"spec": self.spec, "data_dir": self.data_dir, "options": self.options.to_json()}
        return {k: v for k, v in d.items() if v}

    @classmethod
    def from_json(cls, d: dict) -> "DataSource":
        return cls(spec=d.get("spec", FASHION_MNIST), data_dir=d.get("data_dir"),
                   options=DataOptions.from_json(d.get("options", {})))

    def describe(self, split: str) -> str:
        if self.is_fashion_mnist:
            return f"fashion-mnist {'train' if split == 'train' else 'test'}"
        return str(self.split_folder(split))

    # ------------------------------------------------ layout
    def check(self, *splits: str) -> None:
        """Fail now, with the one-line fix, when an ImageFolder source lacks one of ``splits`` or its class folders
        hold no image (before a model is built); Fashion-MNIST is looked for when it is first read."""
        if not self.is_fashion_mnist:
            for split in splits:
                image_folder_classes(self.split_folder(split), check_images=True)

    def split_folder(self, split: str) -> Path:
        """The folder of ``split`` (``train`` or ``val``) of an ImageFolder source; one clear error if absent."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        root = Path(self.spec)
        if not root.is_dir():
            raise DataError(f"--data {root} does not exist; give `fashion-mnist` or an ImageFolder root "
                            f"(<root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg)")
        names = ("train",) if split == "train" else VAL_NAMES
        for name in names:
            if (root / name).is_dir():
                return root / name
        has_splits = any((root / n).is_dir() for n in ("train", *VAL_NAMES))
        if not has_splits:  # a single split folder: its name says which
            if split == "train" and root.name.lower() in VAL_NAMES:
                raise DataError(f"--data {root} is a {root.name} split: calibration and training need training "
                                f"images (never the evaluation split); give the root holding train/ and val/")
            if split == "val" and root.name.lower() == "train":
                raise DataError(f"--data {root} is a train split: evaluation needs held-out images; give the "
                                f"root holding train/ and val/")
            if split == "train" and root.name.lower() != "train":
                raise DataError(f"--data {root} has class folders but no train/ split: calibration and training "
                                f"need training images, kept apart from the evaluation images; lay it out as "
                                f"<root>/train/<class>/ and <root>/val/<class>/")
            return root
        raise DataError(f"--data {root} has no {split}/ folder (found: "
                        f"{', '.join(sorted(d.name for d in root.iterdir() if d.is_dir()))})")

    # ------------------------------------------------ transforms
    def input_size(self, model) -> tuple[int, int, int]:
        info = ModelInfo.of(model)
        o = self.options
        if o.input_size is not None and tuple(o.input_size) != info.input_size:
            if info.model is None:
                raise ValueError(f"--input-size {'x'.join(map(str, o.input_size))}: the IR takes "
                                 f"{'x'.join(map(str, info.input_size))}; drop --input-size or export for that size")
            check_input_size(info.model, o.input_size)
        return tuple(o.input_size) if o.input_size is not None else info.input_size

    def data_config(self, model) -> dict:
        """timm's data config for ``model`` with the overrides, its input size the model's real one."""
        from timm.data import resolve_data_config

        info = ModelInfo.of(model)
        o = self.options
        size = self.input_size(info)
        args = {"input_size": size, "mean": o.mean, "std": o.std, "crop_pct": o.crop_pct,
                "interpolation": o.interpolation}
        cfg = resolve_data_config({k: v for k, v in args.items() if v is not None},
                                  pretrained_cfg=info.pretrained_cfg or {"input_size": size})
        for key in ("mean", "std"):  # a 3-channel pretrained_cfg on a 1-channel model (in_chans=1)
            v = tuple(cfg[key])
            if len(v) != size[0]:
                cfg[key] = (sum(v) / len(v),) * size[0] if size[0] == 1 or len(v) == 1 else v
        return cfg

    def transform(self, model, train: bool = False):
        from timm.data import create_transform

        cfg = self.data_config(model)
        return create_transform(**cfg, is_training=train)

    # ------------------------------------------------ datasets
    def dataset(self, split: str, model, train_transform: bool = False) -> Dataset:
        """``split`` of this source as ``(image tensor, label)`` items for ``model`` (a torch model or a
        :class:`ModelInfo`; checks its input and head)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        info = ModelInfo.of(model)
        if self.is_fashion_mnist:
            ds = self._fashion_mnist(split, info, train_transform)
        else:
            folder = self.split_folder(split)
            ds = ImageFolderSplit(folder, self.transform(info, train_transform), channels=self.input_size(info)[0],
                                  convert_channels=self.options.convert_channels, split=split)
        check_labels(ds.num_labels, info.num_classes, self.describe(split))
        return ds

    def _fashion_mnist(self, split: str, info: ModelInfo, train_transform: bool) -> Dataset:
        o = self.options
        want = self.input_size(info)
        if want[0] != 1 and not o.convert_channels:
            raise DataError(f"Fashion-MNIST images are grayscale (1 channel) but the model takes {want[0]}: pass "
                            f"--convert-channels (replicates the gray channel) or build the model with "
                            f"--model-kwargs in_chans=1")
        ds = FashionMNIST("train" if split == "train" else "test", self.data_dir, train_transform=train_transform,
                          size=want, mean=o.mean, std=o.std)
        return ds

    def calibration(self, model, size: int, seed: int = 0) -> Subset:
        """``size`` items of the train split with the eval transform: calibration never sees val images."""
        return calibration_subset(self.dataset("train", model), size, seed)


def check_config_fits(choice, loaded: LoadedModel, data: DataSource) -> None:
    """A config's ``input_info`` / ``num_classes`` must fit the model it is applied to."""
    cfg = choice.config
    if cfg is None:
        return
    shape = getattr(cfg, "input_shape", None)
    if shape is not None:
        want = tuple(shape[1:]) if len(shape) == 4 else tuple(shape)
        have = data.input_size(loaded.model)
        if want != have:
            raise ValueError(f"config input_info.sample_size {list(shape)} does not fit {loaded.arch}, which takes "
                             f"1x{'x'.join(map(str, have))}: fix input_info or the model")
    n = getattr(cfg, "num_classes", None)
    have_n = getattr(loaded.model, "num_classes", None)
    if n is not None and have_n is not None and n != have_n:
        raise ValueError(f"config num_classes {n} does not fit {loaded.arch}, whose head has {have_n} classes")


def calibration_for(loaded: LoadedModel, data: DataSource, choice, subset_size: int = 0, seed: int = 0) -> Subset:
    """The train images that calibrate ``loaded`` with ``choice`` (a ``quantization.choice.RecipeChoice``: as many as
    its recipe reads), once its config's ``input_info`` / ``num_classes`` are checked against the model."""
    check_config_fits(choice, loaded, data)
    return data.calibration(loaded.model, choice.items_wanted(subset_size or None), seed)


def check_input_size(model: torch.nn.Module, size) -> None:
    """One clear error when ``model`` cannot take ``size`` (C, H, W): tried with one forward pass."""
    size = tuple(int(d) for d in size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input size {size}: give C H W, e.g. 3 224 224")
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *size))
    except Exception as e:  # noqa: BLE001 - timm's assertion or a shape error: one message
        raise ValueError(f"the model cannot take inputs of {'x'.join(map(str, size))} (it takes "
                         f"{'x'.join(map(str, model_input_size(model)))}): {str(e).splitlines()[0][:200]}; "
                         f"drop --input-size, or build the model for that size (--model-kwargs img_size=...)") from None
    finally:
        model.train(was)


def check_labels(num_labels: int, n: Optional[int], where: str) -> None:
    """A head of ``n`` classes must cover labels 0..num_labels-1."""
    if n is not None and num_labels > n:
        raise DataError(f"{where} has labels up to {num_labels - 1} but the model's head has {n} classes: build "
                        f"the model with --model-kwargs num_classes={num_labels} (and fine-tune), or use data "
                        f"whose classes the model knows")


def subset(dataset: Dataset, limit: int) -> Dataset:
    """The first ``limit`` items (all with 0)."""
    if limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}")
    return Subset(dataset, range(min(limit, len(dataset)))) if limit else dataset


__all__ = ["ModelSource", "LoadedModel", "ModelInfo", "DataSource", "DataOptions", "parse_model_kwargs",
           "model_input_size", "data_config_of",
           "check_input_size", "check_labels", "subset", "FASHION_MNIST"]
