"""Quantization, in NNCF's shape: the entry point ``quantize`` (``ptq``: nncf.quantize's calling convention), the
algorithms with their backends (``algorithms``), recipes, their knobs and configs (``recipes``), and what recipes are
made of: roles, specs, rules and the fused placement (``rules``). Importing it changes nothing process-wide."""
from .ptq import QuantizationResult, calibration_items, quantize
from .recipes.config import QuantizeConfig, load_config
from .recipes.recipe import AutoTarget, Recipe, list_recipes, load_recipe, resolve_recipe
from .rules.rule import Rule
from .rules.specs import QuantizerSpec, RangeSpec, SpecError

__all__ = ["quantize", "QuantizationResult", "calibration_items", "Recipe", "AutoTarget", "resolve_recipe",
           "list_recipes", "load_recipe", "Rule", "QuantizerSpec", "RangeSpec", "SpecError", "QuantizeConfig",
           "load_config"]
