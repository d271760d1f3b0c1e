"""Model source + recipe -> the torch model to export, with its calibration data.

Recipes other than ``fp32`` come from ``qmlp_nncf.quantization`` (imported lazily); this module
only feeds them: the train split of the data source, or, only when asked for explicitly
(``random_calibration``), random images (enough for speed measurements, meaningless for accuracy,
and labelled so in the metadata).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
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
    """(C, H, W) the model takes (see ``sources.model_input_size``)."""
    from ..sources import model_input_size

    return model_input_size(model)


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
    from ..quantization.recipes.recipe import AUTO_TARGETS

    return [FP32, *[r for r in list_recipes() if r != FP32], *[f"auto:{t}" for t in AUTO_TARGETS]]


def check_recipe(recipe: str) -> None:
    """Raise a ValueError naming the available recipes if ``recipe`` is not one of them."""
    if recipe == FP32:
        return
    try:
        from ..quantization import list_recipes  # noqa: F401
    except ImportError as e:
        raise ValueError(f"recipe {recipe!r} needs qmlp_nncf.quantization, which cannot be imported ({e}); "
                         f"only {FP32!r} is available") from e
    if recipe not in known_recipes() and not (recipe.endswith(".json") and Path(recipe).is_file()):
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(known_recipes())}, or give the "
                         f"path of a recipe .json file")


def calibration_data(model: torch.nn.Module, size: int, data=None, random: bool = False) -> tuple[Dataset, str]:
    """``size`` train-split images of the data source ``data`` (a ``DataSource``), or, with ``random``,
    reproducible N(0, 1) images; and a description for the metadata."""
    if random:
        return RandomImages(size, input_shape_of(model)), f"random N(0,1) x{size} (speed only, not accuracy)"
    from ..sources import DataSource

    data = data or DataSource()
    return data.calibration(model, size), f"{data.describe('train')} x{size}"


def prepare(source, recipe: str = FP32, data=None, calibration_size: int = 0,
            random_calibration: bool = False, target_device: Optional[str] = None) -> Prepared:
    """Load ``source`` (a ``sources.ModelSource``) and quantize it with ``recipe`` (a name, a recipe .json or
    ``auto:...``) through the pipeline of ``qmlp quantize`` (``sources.calibration_for`` + ``quantization.quantize``): the same calibration
    items of ``data``'s train split (the recipe's calibration size unless ``calibration_size`` is given, plus the
    held-out items of an ``auto:`` search), so ``qmlp export --recipe X`` gives the IR ``qmlp quantize --recipe
    X`` does. ``random_calibration``: random images, for speed measurements only."""
    from ..sources import DataSource, data_config_of

    check_recipe(recipe)
    data = data or DataSource()
    loaded = source.load(float_for="--recipe" if recipe != FP32 else "")
    model, meta = loaded.model, loaded.meta
    shape = data.input_size(model)
    info = {"model": loaded.arch, "recipe": recipe, "source": source.describe()}
    if "note" in meta:
        info["source"] += f" ({meta['note']})"
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
    info["data_config"] = json.dumps(data_config_of(model, data))
    if recipe != FP32:
        from ..quantization import quantize
        from ..quantization.recipes.choice import RecipeChoice
        from ..sources import calibration_for

        choice = RecipeChoice.resolve(recipe, target_device=target_device)
        if random_calibration:
            calibration, info["calibration"] = calibration_data(model, choice.items_wanted(calibration_size or None),
                                                                random=True)
            info["calibration_random"] = "true"
        else:
            calibration = calibration_for(loaded, data, choice, calibration_size)
        result = quantize(model, calibration, choice.recipe, subset_size=calibration_size or None)
        if not random_calibration:
            info["calibration"] = f"{data.describe('train')} x{result.calibration_items}"
        if result.auto is not None:
            from .openvino_ir import quantized_census, record_auto_census

            record_auto_census(result, quantized_census(result.model, (1, *shape)))
            info["auto_census_float"] = json.dumps(result.auto.census["float"])
        model = result.model
    return Prepared(model.eval(), shape, info)
