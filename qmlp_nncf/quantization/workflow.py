"""PTQ from a model source and a data source: the recipe or NNCF-style config, checked against the model,
calibrated on the data source's train split: the one quantize pipeline of ``qmlp quantize`` (where
``qmlp_nncf.pipeline.quantize_to_dir`` adds the evaluation, the checkpoint and the IR), ``qmlp export --recipe``
and the benchmarks."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

from ..sources import DataSource, LoadedModel
from .ptq import QuantizationResult, items_wanted, quantize


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RecipeChoice:
    """``--recipe NAME|FILE`` or ``--config FILE``, resolved: the recipe, NNCF's ignored scope, and the
    config (``QuantizeConfig``, for the model, data and training keys it may name)."""

    recipe: object
    ignored_scope: object = None
    config: object = None
    target_device: Optional[str] = None  # nncf.TargetDevice name (--target-device, or the config's)

    @classmethod
    def resolve(cls, recipe: Optional[str] = None, config: Optional[str] = None,
                target_device: Optional[str] = None) -> "RecipeChoice":
        from .recipes import check_target_device

        target_device = check_target_device(target_device, "--target-device")
        if config:  # --recipe with --config: the recipe the config starts from (when it names none)
            from .config import load_config

            cfg = load_config(config, recipe=recipe)
            if target_device and cfg.target_device and target_device != cfg.target_device:
                raise ValueError(f"--target-device {target_device} and the config's target_device "
                                 f"{cfg.target_device} disagree; give one")
            return cls(cfg.recipe, cfg.ignored_scope, cfg, target_device or cfg.target_device)
        if not recipe:
            raise ValueError("give --recipe NAME (see `qmlp quantize --list-recipes`) or --config FILE")
        if recipe.startswith("auto:"):  # searched per model at quantization time (quantization.auto)
            from .auto import parse_target

            parse_target(recipe)
            return cls(recipe, target_device=target_device)
        from .recipes import load_recipe

        return cls(load_recipe(recipe), target_device=target_device)


def check_config_fits(choice: RecipeChoice, loaded: LoadedModel, data: DataSource) -> None:
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


def quantize_source(loaded: LoadedModel, data: DataSource, choice: RecipeChoice, calibration_size: int = 0,
                    seed: int = 0, log=_log, auto_max_minutes: float = 15.0) -> QuantizationResult:
    """PTQ of a float model with calibration images from ``data``'s train split (an ``auto:`` recipe within
    ``auto_max_minutes``)."""
    check_config_fits(choice, loaded, data)
    calib = data.calibration(loaded.model, items_wanted(choice.recipe, calibration_size or None), seed)
    return quantize(loaded.model, calib, choice.recipe, ignored_scope=choice.ignored_scope,
                    calibration_size=calibration_size or None, auto_max_minutes=auto_max_minutes,
                    target_device=choice.target_device, log=log)
