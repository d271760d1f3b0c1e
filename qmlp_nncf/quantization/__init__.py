"""Quantization: specs, role-based rules, recipes and the NNCF post-pass (``quantize``)."""
from .config import QuantizeConfig, load_config
from .ptq import QuantizationResult, calibration_items, quantize
from .recipes import Recipe, list_recipes, load_recipe
from .rules import Rule
from .specs import QuantizerSpec, RangeSpec, SpecError

__all__ = ["quantize", "QuantizationResult", "calibration_items", "Recipe", "list_recipes", "load_recipe", "Rule", "QuantizerSpec",
           "RangeSpec", "SpecError", "QuantizeConfig", "load_config"]
