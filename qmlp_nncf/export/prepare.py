"""Model name or checkpoint + recipe -> the torch model to export, with its calibration data.

Recipes other than ``fp32`` come from ``qmlp_nncf.quantization`` (imported lazily); this module
only feeds them: Fashion-MNIST train images for 28x28 models, random images for 224-px models
(enough for speed measurements, meaningless for accuracy, and labelled so in the metadata).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import Dataset

FP32 = "fp32"


@dataclass
class Prepared:
    model: torch.nn.Module  # float or quantized, eval mode
    input_shape: tuple[int, ...]  # (C, H, W), no batch
    metadata: dict  # what export_ir stores in rt_info


class RandomImages(Dataset):
    """``n`` reproducible N(0, 1) images with label 0: calibration for speed benchmarks only."""

    def __init__(self, n: int, shape: tuple[int, ...], seed: int = 0):
        self.images = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], 0


def input_shape_of(model: torch.nn.Module) -> tuple[int, ...]:
    """(C, H, W) from the timm pretrained config."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "input_size" not in cfg:
        raise ValueError(f"{type(model).__name__} has no timm pretrained_cfg['input_size']; "
                         f"pass the input shape explicitly")
    return tuple(int(d) for d in cfg["input_size"])


def reinit_zero_head(model: torch.nn.Module, seed: int = 0) -> bool:
    """timm zero-initialises classifier heads, so a random model outputs all zeros: re-draw it."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, torch.nn.Linear) or head.weight.abs().sum() != 0:
        return False
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(seed)) * 0.02)
    return True


def known_recipes() -> list[str]:
    """``fp32`` plus the recipes of ``qmlp_nncf.quantization`` when it is installed."""
    try:
        from ..quantization import list_recipes
    except ImportError:
        return [FP32]
    return [FP32, *[r for r in list_recipes() if r != FP32]]


def check_recipe(recipe: str) -> None:
    """Raise a ValueError naming the available recipes if ``recipe`` is not one of them."""
    if recipe == FP32:
        return
    try:
        from ..quantization import list_recipes  # noqa: F401
    except ImportError as e:
        raise ValueError(f"recipe {recipe!r} needs qmlp_nncf.quantization, which cannot be imported ({e}); "
                         f"only {FP32!r} is available") from e
    if recipe not in known_recipes():
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(known_recipes())}")


def apply_recipe(model: torch.nn.Module, recipe: str, calibration: Dataset) -> torch.nn.Module:
    """``model`` itself for ``fp32``, else ``qmlp_nncf.quantization.quantize(model, calibration, recipe)``."""
    check_recipe(recipe)
    if recipe == FP32:
        return model
    from ..quantization import quantize

    return quantize(model, calibration, recipe=recipe).eval()


def calibration_data(input_shape: tuple[int, ...], size: int, data_dir: Optional[str] = None,
                     ) -> tuple[Dataset, str]:
    """Fashion-MNIST train subset for 1x28x28 models, random images otherwise; and a description."""
    from ..data import FashionMNIST, calibration_subset

    if tuple(input_shape) == (1, 28, 28):
        return calibration_subset(FashionMNIST("train", data_dir), size), f"fashion-mnist train x{size}"
    return RandomImages(size, input_shape), f"random N(0,1) x{size} (speed only, not accuracy)"


def prepare(name: Optional[str], checkpoint: Optional[str], recipe: str = FP32, calibration_size: int = 300,
            data_dir: Optional[str] = None) -> Prepared:
    """Load (zoo/checkpoint/timm name, see ``cli.resolve_model``) and quantize with ``recipe``."""
    from ..cli import resolve_model

    check_recipe(recipe)
    model, meta = resolve_model(name, checkpoint, float_for="--recipe" if recipe != FP32 else "")
    shape = input_shape_of(model)
    info = {"model": meta.get("arch", name), "recipe": recipe,
            "source": str(checkpoint) if checkpoint else meta.get("note", f"zoo checkpoint of {name}")}
    if "nncf_config" in meta:  # a `qmlp quantize` / `qmlp qat` checkpoint: exported as it is
        info["recipe"] = meta.get("recipe") or "unknown (quantized checkpoint)"
        if meta.get("top1") is not None:
            info["checkpoint_top1"] = meta["top1"]
        if meta.get("float_top1") is not None:
            info["float_top1_reference"] = meta["float_top1"]
    elif meta.get("top1") is not None:
        info["float_top1_reference"] = meta["top1"]
    if reinit_zero_head(model):
        info["head"] = "zero-initialised head re-drawn from N(0, 0.02)"
    if recipe != FP32:
        calibration, info["calibration"] = calibration_data(shape, calibration_size, data_dir)
        model = apply_recipe(model, recipe, calibration)
    return Prepared(model.eval(), shape, info)
