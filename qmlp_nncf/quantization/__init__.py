"""Quantization: specs, role-based rules, recipes and the NNCF post-pass (``quantize``)."""
from .ptq import QuantizationResult, calibration_items, quantize
from .recipes.config import QuantizeConfig, load_config
from .recipes.recipe import Recipe, list_recipes, load_recipe
from .rules.rule import Rule
from .rules.specs import QuantizerSpec, RangeSpec, SpecError

__all__ = ["quantize", "QuantizationResult", "calibration_items", "Recipe", "list_recipes", "load_recipe", "Rule", "QuantizerSpec",
           "RangeSpec", "SpecError", "QuantizeConfig", "load_config"]
