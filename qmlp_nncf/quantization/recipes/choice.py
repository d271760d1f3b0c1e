"""What the ``qmlp`` command and the benchmarks quantize with: ``--recipe NAME|FILE|auto:...`` or ``--config FILE``,
resolved once at the boundary (:class:`RecipeChoice`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .recipe import items_wanted


@dataclass(frozen=True)
class RecipeChoice:
    """``--recipe NAME|FILE|auto:...`` or ``--config FILE``, resolved once (``recipes.resolve_recipe``): the recipe
    (a ``Recipe`` or an ``AutoTarget``), NNCF's ignored scope, and the config (``QuantizeConfig``, for the model,
    data and training keys it may name)."""

    recipe: object  # Recipe | AutoTarget
    ignored_scope: object = None
    config: object = None

    @classmethod
    def resolve(cls, recipe: Optional[str] = None, config: Optional[str] = None,
                target_device: Optional[str] = None, auto_max_minutes: float = 15.0) -> "RecipeChoice":
        from .recipe import check_target_device, resolve_recipe

        target_device = check_target_device(target_device, "--target-device")
        if config:  # --recipe with --config: the recipe the config starts from (when it names none)
            from .config import load_config

            cfg = load_config(config, recipe=recipe)
            if target_device and cfg.target_device and target_device != cfg.target_device:
                raise ValueError(f"--target-device {target_device} and the config's target_device "
                                 f"{cfg.target_device} disagree; give one")
            return cls(resolve_recipe(cfg.recipe, target_device=target_device or cfg.target_device,
                                      auto_max_minutes=auto_max_minutes), cfg.ignored_scope, cfg)
        if not recipe:
            raise ValueError("give --recipe NAME (see `qmlp quantize --list-recipes`) or --config FILE")
        return cls(resolve_recipe(recipe, target_device=target_device, auto_max_minutes=auto_max_minutes))

    def items_wanted(self, subset_size: Optional[int] = None) -> int:
        """The calibration items quantizing with this choice reads (``recipes.items_wanted``)."""
        return items_wanted(self.recipe, subset_size)


__all__ = ["RecipeChoice"]
