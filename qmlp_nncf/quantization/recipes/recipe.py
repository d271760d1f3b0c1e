"""Recipes: named, JSON-defined quantization setups (``recipes/*.json``, installed as ``qmlp_nncf.recipes``).

A recipe names the NNCF global settings (placement mode, preset, SmoothQuant, range estimator),
the default weight/activation specs, the rules, the calibration size, whether Q-MLP surgery is
expected, whether the ranges are then tuned (``range_tuning``), and, for weight-only recipes, the
``nncf.compress_weights`` settings, the 4-bit PTQ aids ``reparameterize`` (``reparam.py``) and ``error_correction``
(``error_correction.py``), and the ``placement`` the post-pass moves quantizers to (``"fused"``: where
OpenVINO folds them into their producers, see ``placement.py``). ``"extends": NAME`` starts from another recipe's
keys.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Optional

from ..rules.placement import Placement
from ..rules.rule import Rule, rules_from_list
from ..rules.specs import QuantizerSpec, RangeSpec, SpecError, check_keys, check_type
from .knobs import ErrorCorrection, RangeTuning, Reparameterization

MODEL_TYPES = ("default", "transformer")
PRESETS = ("performance", "mixed")
OVERFLOW_FIX = ("enable", "disable", "first_layer_only")  # nncf.OverflowFix values
TARGET_DEVICES = ("ANY", "CPU", "GPU", "NPU", "CPU_SPR")  # nncf.TargetDevice names
COMPRESSION_MODES = ("int4_sym", "int4_asym", "int8_sym", "int8_asym")
RECIPE_KEYS = {"description", "expects_qmlp", "calibration_size", "nncf", "weights", "activations", "recalibrate",
               "family_rules", "rules", "weight_compression", "range_tuning", "placement", "reparameterize",
               "error_correction", "census"}  # census: what an auto: recipe's IR runs in float (information only)


NNCF_ESTIMATORS = ("min_max", "mean_min_max", "percentile")  # what NNCF's global settings can express


def check_overflow_fix(value, where: str) -> None:
    """NNCF's ``overflow_fix`` values (None: not given)."""
    if value not in (None, *OVERFLOW_FIX):
        raise SpecError(f"{where}: {value!r} unknown; choose one of {list(OVERFLOW_FIX)}")


def check_target_device(value, where: str) -> Optional[str]:
    """An ``nncf.TargetDevice`` (or its name) as its name; None stays None."""
    name = getattr(value, "name", value)
    if name is not None and name not in TARGET_DEVICES:
        raise SpecError(f"{where}: {value!r} unknown; choose one of {list(TARGET_DEVICES)}")
    return name


@dataclass(frozen=True)
class NNCFSettings:
    """Global ``nncf.quantize`` settings: where NNCF places quantizers and how it ranges them."""

    model_type: str = "default"  # default: every tensor NNCF quantizes; transformer: Linear/MatMul inputs only
    preset: Optional[str] = None  # performance (symmetric) | mixed (asymmetric activations); None = NNCF's
    smooth_quant: bool = False
    fast_bias_correction: bool = True
    range: Optional[RangeSpec] = None  # NNCF's global activation range estimator; None = NNCF's default
    overflow_fix: Optional[str] = None  # enable | disable | first_layer_only (NNCF's own quantizers); None = NNCF's
    target_device: Optional[str] = None  # nncf.TargetDevice name (TARGET_DEVICES); None = NNCF's (ANY)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "NNCFSettings":
        check_keys(d, {"model_type", "preset", "smooth_quant", "fast_bias_correction", "range", "overflow_fix",
                       "target_device"}, where)
        check_overflow_fix(d.get("overflow_fix"), f"{where}.overflow_fix")
        check_target_device(d.get("target_device"), f"{where}.target_device")
        kw = dict(d)
        if kw.get("model_type", "default") not in MODEL_TYPES:
            raise SpecError(f"{where}.model_type: {kw['model_type']!r} unknown; choose one of {list(MODEL_TYPES)}")
        if kw.get("preset") not in (None, *PRESETS):
            raise SpecError(f"{where}.preset: {kw['preset']!r} unknown; choose one of {list(PRESETS)}")
        for key in ("smooth_quant", "fast_bias_correction"):
            if key in kw:
                check_type(kw[key], bool, f"{where}.{key}")
        if "range" in kw:
            kw["range"] = RangeSpec.from_dict(kw["range"], f"{where}.range")
            if kw["range"].estimator not in NNCF_ESTIMATORS:
                raise SpecError(f"{where}.range.estimator: NNCF's global estimator is one of {list(NNCF_ESTIMATORS)}, "
                                f"not {kw['range'].estimator!r}; set per-op estimators in 'activations' or rules")
        return cls(**kw)


@dataclass(frozen=True)
class WeightCompression:
    """``nncf.compress_weights`` settings (weight-only int4/int8 for deployment size)."""

    mode: str = "int4_sym"
    group_size: int = 32
    ratio: float = 1.0

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "WeightCompression":
        check_keys(d, {"mode", "group_size", "ratio"}, where)
        if d.get("mode", "int4_sym") not in COMPRESSION_MODES:
            raise SpecError(f"{where}.mode: {d['mode']!r} unknown; choose one of {list(COMPRESSION_MODES)}")
        check_type(d.get("group_size", 32), int, f"{where}.group_size")
        check_type(d.get("ratio", 1.0), (int, float), f"{where}.ratio")
        return cls(**d)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    expects_qmlp: bool = False  # the recipe is meant for a Q-MLP model (surgery applied)
    calibration_size: int = 300
    nncf: NNCFSettings = field(default_factory=NNCFSettings)
    weights: QuantizerSpec = QuantizerSpec(bits=8, symmetric=True, per_channel=True)
    activations: QuantizerSpec = QuantizerSpec(bits=8, symmetric=True)
    recalibrate: bool = True  # False: keep NNCF's ranges and modes, rules only change bits (baselines)
    family_rules: bool = False  # prepend the built-in rule set of the model's family
    rules: tuple = ()
    weight_compression: Optional[WeightCompression] = None
    range_tuning: Optional[RangeTuning] = None  # fit the ranges by distillation after calibration
    placement: Placement = Placement()  # quantizers moved / added where OpenVINO fuses them (placement.py)
    reparameterize: Optional[Reparameterization] = None  # norm outputs equalised per channel first (reparam.py)
    error_correction: Optional[ErrorCorrection] = None  # weights re-solved for the quantized inputs

    @classmethod
    def from_dict(cls, name: str, d: dict, where: Optional[str] = None) -> "Recipe":
        where = where or f"recipe {name}"
        check_keys(d, RECIPE_KEYS, where)
        kw: dict = {"name": name}
        for key, typ in (("description", str), ("expects_qmlp", bool), ("calibration_size", int),
                         ("recalibrate", bool), ("family_rules", bool)):
            if key in d:
                kw[key] = check_type(d[key], typ, f"{where}.{key}")
        if kw.get("calibration_size", 1) < 1:
            raise SpecError(f"{where}.calibration_size must be >= 1")
        if "nncf" in d:
            kw["nncf"] = NNCFSettings.from_dict(d["nncf"], f"{where}.nncf")
        if "weights" in d:
            kw["weights"] = cls.weights.merged(d["weights"], f"{where}.weights")
        if "activations" in d:
            kw["activations"] = cls.activations.merged(d["activations"], f"{where}.activations")
            if kw["activations"].half_range:
                raise SpecError(f"{where}.activations.half_range: half_range is NNCF's overflow fix for weights; "
                                f"set it under 'weights'")
        if "rules" in d:
            kw["rules"] = rules_from_list(d["rules"], f"{where}.rules")
        if "placement" in d:
            kw["placement"] = Placement.from_value(d["placement"], f"{where}.placement")
            if kw["placement"].active and not kw.get("recalibrate", True):
                raise SpecError(f"{where}.placement: moving quantizers needs the post-pass to calibrate them; "
                                f"drop 'placement' or 'recalibrate': false")
        if "weight_compression" in d:
            kw["weight_compression"] = WeightCompression.from_dict(d["weight_compression"],
                                                                   f"{where}.weight_compression")
        if d.get("range_tuning") is not None:
            kw["range_tuning"] = RangeTuning.from_dict(d["range_tuning"], f"{where}.range_tuning")
            if "weight_compression" in kw:
                raise SpecError(f"{where}.range_tuning: weight-only compression has no quantizer ranges to tune")
        for key, knob in (("reparameterize", Reparameterization), ("error_correction", ErrorCorrection)):
            if d.get(key) is not None:
                kw[key] = knob.from_value(d[key], f"{where}.{key}")
                if kw[key] is not None and "weight_compression" in kw:
                    raise SpecError(f"{where}.{key}: applies to quantizers (weights and activations), not to "
                                    f"weight-only compression; drop it or 'weight_compression'")
        return cls(**kw)

    def with_rules(self, extra: tuple[Rule, ...]) -> "Recipe":
        return replace(self, rules=self.rules + tuple(extra))

    def for_target(self, device) -> "Recipe":
        """This recipe for ``nncf.quantize(target_device=device)`` (an ``nncf.TargetDevice`` or its name; None: as
        it is)."""
        name = check_target_device(device, "target_device")
        return self if name is None else replace(self, nncf=replace(self.nncf, target_device=name))


def _recipe_dir():
    return resources.files("qmlp_nncf.recipes")


def list_recipes() -> list[str]:
    return sorted(p.name[:-5] for p in _recipe_dir().iterdir() if p.name.endswith(".json"))


AUTO_TARGETS = {"w4a4": (4, 4), "w4a8": (4, 8), "w8a8": (8, 8)}  # recipe="auto:<target>": searched per model
AUTO_CALIBRATION = 300  # calibration items of recipe="auto:..." (ranges and the search objective)
AUTO_HOLDOUT = 256  # further items of recipe="auto:...", unseen by the search, on which its finish is chosen


@dataclass(frozen=True)
class AutoTarget:
    """``recipe="auto:w4a4"`` (``auto:w4a8``, ``auto:w8a8``) resolved: a recipe searched for the model at quantization
    time (``quantization.algorithms.auto``) within ``max_minutes``, with the caller's NNCF settings (``target_device`` ...)
    applied to what it finds. The one place that reads an ``auto:`` string is :meth:`parse`."""

    target: str  # w4a4 | w4a8 | w8a8
    max_minutes: float = 15.0
    target_device: Optional[str] = None
    nncf_overrides: tuple = ()  # (key, value) pairs of NNCFSettings set on every recipe the search makes

    @staticmethod
    def is_auto(recipe) -> bool:
        return isinstance(recipe, AutoTarget) or (isinstance(recipe, str) and recipe.startswith("auto:"))

    @classmethod
    def parse(cls, recipe: str, max_minutes: float = 15.0) -> "AutoTarget":
        target = recipe.split(":", 1)[1] if recipe.startswith("auto:") else recipe
        if target not in AUTO_TARGETS:
            raise SpecError(f"recipe {recipe!r}: unknown auto target {target!r}; choose one of "
                            f"{', '.join('auto:' + t for t in AUTO_TARGETS)}")
        if not max_minutes > 0:
            raise ValueError(f"{recipe} needs a time budget > 0 (--max-minutes; auto_max_minutes in Python), "
                             f"got {max_minutes:g}")
        return cls(target, max_minutes)

    @property
    def name(self) -> str:
        return f"auto:{self.target}"

    @property
    def calibration_size(self) -> int:
        """Calibration items the search and the finishes calibrate on (``AUTO_HOLDOUT`` more are read)."""
        return AUTO_CALIBRATION

    @property
    def bits(self) -> tuple[int, int]:
        """(weight bits, activation bits) inside the blocks."""
        return AUTO_TARGETS[self.target]

    def finish(self, recipe: Recipe) -> Recipe:
        """A recipe the search made, with the caller's NNCF settings."""
        recipe = recipe.for_target(self.target_device)
        return replace(recipe, nncf=replace(recipe.nncf, **dict(self.nncf_overrides))) if self.nncf_overrides else recipe


def items_wanted(recipe: Recipe | AutoTarget, subset_size: Optional[int] = None) -> int:
    """How many calibration items ``quantize`` reads for a resolved ``recipe``: the subset size (default: the recipe's
    ``calibration_size``), plus ``AUTO_HOLDOUT`` for an ``auto:`` recipe."""
    return (subset_size or recipe.calibration_size) + (AUTO_HOLDOUT if isinstance(recipe, AutoTarget) else 0)


def resolve_recipe(recipe, *, target_device=None, model_type=None, fast_bias_correction=None,
                   auto_max_minutes: float = 15.0) -> Recipe | AutoTarget:
    """``recipe`` (a name, a recipe .json path, ``"auto:..."``, a ``Recipe`` or an ``AutoTarget``) with nncf.quantize's
    settings applied, resolved once at the boundary: a ``Recipe``, or an ``AutoTarget`` for a recipe searched per
    model. ``target_device``: an ``nncf.TargetDevice`` or its name; ``model_type``: an ``nncf.ModelType`` or
    ``"transformer"``; ``fast_bias_correction``: True / False turn NNCF's fast bias correction on / off; None (all
    three) keeps the recipe's."""
    device = check_target_device(target_device, "target_device")
    overrides = {}
    if model_type is not None:
        kind = getattr(model_type, "value", model_type)
        if kind not in MODEL_TYPES:
            raise SpecError(f"model_type: {model_type!r} unknown; give nncf.ModelType.TRANSFORMER or None")
        overrides["model_type"] = kind
    if fast_bias_correction is not None:
        overrides["fast_bias_correction"] = check_type(fast_bias_correction, bool, "fast_bias_correction")
    if isinstance(recipe, AutoTarget):
        return replace(recipe, target_device=device or recipe.target_device,
                       nncf_overrides=recipe.nncf_overrides + tuple(overrides.items()))
    if AutoTarget.is_auto(recipe):
        return replace(AutoTarget.parse(recipe, auto_max_minutes), target_device=device,
                       nncf_overrides=tuple(overrides.items()))
    if isinstance(recipe, (str, Path)):
        recipe = load_recipe(recipe)
    elif not isinstance(recipe, Recipe):
        raise SpecError(f"recipe: {type(recipe).__name__} is not a recipe; give a name (see `qmlp quantize "
                        f"--list-recipes`), a recipe .json path, 'auto:w4a4' or a Recipe")
    recipe = recipe.for_target(device)
    return replace(recipe, nncf=replace(recipe.nncf, **overrides)) if overrides else recipe


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe by name (``qmlp_w4a4``) or from a JSON file path."""
    name, data = _recipe_data(name_or_path, ())
    return Recipe.from_dict(name, data)


def recipe_data(name_or_path: str | Path) -> dict:
    """The JSON object of a recipe by name or path, with ``extends`` resolved (a fresh dict to change and save)."""
    return _recipe_data(name_or_path, ())[1]


def _recipe_data(name_or_path: str | Path, chain: tuple[str, ...]) -> tuple[str, dict]:
    """The recipe's JSON object, with ``extends`` resolved (its keys over the base recipe's)."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        text, name, key = path.read_text(), path.stem, str(path.resolve())
    else:
        res = _recipe_dir() / f"{name_or_path}.json"
        if not res.is_file():
            raise SpecError(f"unknown recipe {str(name_or_path)!r}; available: {', '.join(list_recipes())} "
                            f"(or a path to a recipe .json file)")
        text, name, key = res.read_text(), str(name_or_path), str(name_or_path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"recipe {name}: invalid JSON: {e}") from None
    if isinstance(data, dict) and "extends" in data:
        base = check_type(data.pop("extends"), str, f"recipe {name}.extends")
        beside = path.parent / base
        if path.suffix == ".json" and path.is_file() and base.endswith(".json") and beside.is_file():
            base = str(beside)  # a file's relative extends is found beside that file first
        if key in chain:
            raise SpecError(f"recipe {name}.extends: {' -> '.join(chain + (key,))} is a cycle")
        data = {**_recipe_data(base, chain + (key,))[1], **data}
    return name, data
