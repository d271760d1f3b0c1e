"""NNCF-style JSON configs: the NNCF 2.x quantization keys users already have, plus a ``qmlp`` key.

NNCF 3 removed ``NNCFConfig``; ``load_config`` reads such a file into a :class:`Recipe` (and an
``nncf.IgnoredScope``) for :func:`qmlp_nncf.quantization.quantize`. Schema (every key optional,
but ``compression`` needs its ``algorithm``; docs/config.md has a complete example)::

    model        str   timm / zoo model name                  checkpoint  str  path, relative to the config file
    input_info   {"sample_size": [1, 1, 28, 28]}
    compression  {"algorithm": "quantization",                (or a list holding this one object)
                  "preset": "performance" | "mixed",
                  "initializer": {"range": {"num_init_samples": 300,
                                            "type": "min_max" | "mean_min_max" | "percentile",
                                            "params": {"min_percentile": 0.1, "max_percentile": 99.9}}},
                  "weights" | "activations": {"bits": 4 | 8, "mode": "symmetric" | "asymmetric",
                                              "per_channel": bool},
                  "scope_overrides": {"weights": {SCOPE: {bits, mode, per_channel}},
                                      "activations": {SCOPE: {bits, mode, range: {type, params}}}},
                  "ignored_scopes": [SCOPE, ...]}
    qmlp         {"recipe": NAME or path.json, "rules": [rule, ...], "calibration_size": 300,
                  "range_tuning": {"steps": 300, "lr": 0.001, "batch_size": 64, "seed": 0,
                                   "weight_rounding_lr": 0.0003, "drop_prob": 0.5, "block_loss": 1.0} | false}

Semantics: start from ``qmlp.recipe`` (default ``nncf_default_w8a8``) and override it.
``preset`` sets NNCF's preset and the default modes (both: symmetric weights; performance:
symmetric activations, mixed: asymmetric); an explicit ``mode`` wins. ``initializer.range``
becomes the default activation range (``percentile``: NNCF 2.x's mirror-image pair
``min/max_percentile``, kept as ``max_percentile``); ``num_init_samples`` the calibration size.
``weights``/``activations`` override the recipe's default specs. ``qmlp.rules`` are appended to
the recipe's rules, then one rule per ``scope_overrides`` entry, restricted to its kind of
quantizer (later rules win: op-name overrides beat role rules). ``qmlp.range_tuning`` replaces the
recipe's range tuning (``{}``: the defaults) or, with ``false``, turns it off.

SCOPE is ``{re}REGEX`` or an exact op name as ``nncf.build_graph`` lists it
(``blocks/0/mlp_channels/fc1/linear/0``). A scope override's regex must match the whole name of
the op the quantizer sits on or of a Linear it feeds; ``ignored_scopes`` go to
``nncf.IgnoredScope`` (regex matched from the start of the name) and remove an op's weight and
input quantizers. Scopes that match nothing fail in ``quantize``, which has the model.

The ``nncf_*`` baseline recipes keep NNCF's own quantizers (``recalibrate: false``): there the
activation mode picks NNCF's preset, the range becomes NNCF's global estimator, and otherwise
only ``bits`` can change. Every error is one :class:`SpecError` naming the place
(``compression.activations.bits``) and the valid choices.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import nncf

from .range_tuning import RangeTuning
from .recipes import PRESETS, Recipe, load_recipe
from .rules import Rule, rules_from_list
from .specs import RangeSpec, SpecError, check_keys, check_type

DEFAULT_RECIPE = "nncf_default_w8a8"
TOP_KEYS = {"model", "checkpoint", "input_info", "compression", "qmlp"}
COMPRESSION_KEYS = {"algorithm", "preset", "initializer", "weights", "activations", "scope_overrides",
                    "ignored_scopes"}
RANGE_TYPES = ("min_max", "mean_min_max", "percentile")
MODES = {"symmetric": True, "asymmetric": False}
KINDS = ("weights", "activations")
NNCF_OWN = "keeps NNCF's own quantizers (recalibrate: false), so only their 'bits' can change; use a qmlp_* recipe"


@dataclass(frozen=True)
class QuantizeConfig:
    """A loaded config: the recipe to run (overrides applied), NNCF's ignored scope, and the model."""

    recipe: Recipe
    ignored_scope: Optional[nncf.IgnoredScope] = None
    model: Optional[str] = None
    checkpoint: Optional[str] = None
    input_shape: Optional[tuple] = None


def load_config(path_or_dict: str | Path | dict) -> QuantizeConfig:
    """Read and validate a config file (or an already parsed dict); see the module docstring."""
    base_dir = None
    if isinstance(path_or_dict, dict):
        data, label = path_or_dict, "config"
    else:
        path = Path(path_or_dict)
        if not path.is_file():
            raise SpecError(f"config file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SpecError(f"config {path}: invalid JSON: {e}") from None
        base_dir, label = path.parent, path.stem
    check_keys(data, TOP_KEYS, "config")

    qmlp = check_keys(data.get("qmlp", {}), {"recipe", "rules", "calibration_size", "range_tuning"}, "qmlp")
    recipe = _base_recipe(check_type(qmlp.get("recipe", DEFAULT_RECIPE), str, "qmlp.recipe"), base_dir)
    if "rules" in qmlp:
        recipe = recipe.with_rules(rules_from_list(qmlp["rules"], "qmlp.rules"))
    if "range_tuning" in qmlp:
        recipe = replace(recipe, range_tuning=_range_tuning(qmlp["range_tuning"], recipe))
    comp = _compression(data.get("compression"))
    recipe, ignored = _apply_compression(recipe, comp)
    calibration = _calibration_size(comp, qmlp)
    if calibration is not None:
        recipe = replace(recipe, calibration_size=calibration)

    checkpoint = data.get("checkpoint")
    if checkpoint is not None:
        check_type(checkpoint, str, "checkpoint")
        if base_dir is not None and not Path(checkpoint).is_absolute():
            checkpoint = str(base_dir / checkpoint)
    return QuantizeConfig(recipe=replace(recipe, name=f"{recipe.name}+{label}"), ignored_scope=ignored,
                          model=check_type(data.get("model", ""), str, "model") or None,
                          checkpoint=checkpoint, input_shape=_input_shape(data.get("input_info")))


# ------------------------------------------------------------------ sections
def _base_recipe(name: str, base_dir: Optional[Path]) -> Recipe:
    if name.endswith(".json") and base_dir is not None and (base_dir / name).is_file():
        name = str(base_dir / name)
    try:
        return load_recipe(name)
    except SpecError as e:
        raise SpecError(f"qmlp.recipe: {e}") from None


def _compression(comp: Any) -> dict:
    if comp is None:
        return {}
    if isinstance(comp, list):
        if len(comp) != 1:
            raise SpecError(f"compression: expected one algorithm (quantization), got a list of {len(comp)}")
        comp = comp[0]
    check_keys(comp, COMPRESSION_KEYS, "compression")
    if comp.get("algorithm") != "quantization":
        raise SpecError(f"compression.algorithm: {comp.get('algorithm')!r} is not supported; valid: ['quantization']")
    init = check_keys(comp.get("initializer", {}), {"range"}, "compression.initializer")
    if isinstance(init.get("range"), list):
        raise SpecError("compression.initializer.range: per-scope range lists are not supported; give one object "
                        "and set per-op ranges with scope_overrides (\"range\") or qmlp.rules")
    check_keys(init.get("range", {}), {"num_init_samples", "type", "params"}, "compression.initializer.range")
    return comp


def _input_shape(info: Any) -> Optional[tuple]:
    if info is None:
        return None
    if isinstance(info, list):
        raise SpecError("input_info: one input only, as an object {\"sample_size\": [1, 1, 28, 28]}")
    check_keys(info, {"sample_size"}, "input_info")
    if "sample_size" not in info:
        raise SpecError("input_info.sample_size: required, e.g. [1, 1, 28, 28]")
    size = check_type(info["sample_size"], list, "input_info.sample_size")
    for i, dim in enumerate(size):
        if check_type(dim, int, f"input_info.sample_size[{i}]") < 1:
            raise SpecError(f"input_info.sample_size[{i}]: dimensions must be >= 1, got {dim}")
    return tuple(size)


def _range_tuning(value, recipe: Recipe) -> Optional[RangeTuning]:
    if value is False:
        return None
    if recipe.weight_compression is not None:
        raise SpecError(f"qmlp.range_tuning: recipe {recipe.name} compresses weights only; it has no quantizer "
                        f"ranges to tune")
    if not isinstance(value, dict):
        raise SpecError(f"qmlp.range_tuning: expected an object (or false), got {type(value).__name__} {value!r}")
    return RangeTuning.from_dict(value, "qmlp.range_tuning")


def _calibration_size(comp: dict, qmlp: dict) -> Optional[int]:
    rng = comp.get("initializer", {}).get("range", {})
    sizes = {}
    if isinstance(rng, dict) and "num_init_samples" in rng:
        sizes["compression.initializer.range.num_init_samples"] = rng["num_init_samples"]
    if "calibration_size" in qmlp:
        sizes["qmlp.calibration_size"] = qmlp["calibration_size"]
    for where, n in sizes.items():
        if check_type(n, int, where) < 1:
            raise SpecError(f"{where}: must be >= 1, got {n}")
    if len(set(sizes.values())) > 1:
        raise SpecError(f"{' and '.join(sizes)} disagree ({', '.join(map(str, sizes.values()))}); give one")
    return next(iter(sizes.values()), None)


def _range(d: Any, where: str, keys: frozenset = frozenset({"type", "params"})) -> Optional[RangeSpec]:
    """NNCF 2.x ``{"type": ..., "params": {...}}`` -> RangeSpec; None without a ``type`` (keep the recipe's)."""
    check_keys(d, set(keys), where)
    if "type" not in d:
        if "params" in d:
            raise SpecError(f"{where}.params: give the range 'type' too; choose one of {list(RANGE_TYPES)}")
        return None
    kind = check_type(d["type"], str, f"{where}.type")
    if kind not in RANGE_TYPES:
        raise SpecError(f"{where}.type: {kind!r} unknown; choose one of {list(RANGE_TYPES)}")
    if kind != "percentile":
        if d.get("params"):
            raise SpecError(f"{where}.params: only the percentile type takes params, not {kind!r}")
        return RangeSpec(kind)
    params = check_keys(d.get("params", {}), {"min_percentile", "max_percentile"}, f"{where}.params")
    for key in params:
        check_type(params[key], (int, float), f"{where}.params.{key}")
    high = params.get("max_percentile", 100.0 - params.get("min_percentile", 0.1))
    low = params.get("min_percentile", 100.0 - high)
    if not math.isclose(low, 100.0 - high, abs_tol=1e-9):
        raise SpecError(f"{where}.params: min_percentile {low} and max_percentile {high} must mirror each other "
                        f"(min = 100 - max): one percentile serves both tails")
    try:
        return RangeSpec("percentile", float(high))
    except SpecError as e:
        raise SpecError(f"{where}.params.max_percentile: {e}") from None


def _spec(d: Any, where: str, kind: str, extra: frozenset = frozenset()) -> dict:
    """NNCF 2.x ``{bits, mode, per_channel}`` (+ ``range`` in scope overrides) -> partial spec dict."""
    check_keys(d, {"bits", "mode", "per_channel"} | extra, where)
    spec: dict = {}
    if "bits" in d:
        if check_type(d["bits"], int, f"{where}.bits") not in (4, 8):
            raise SpecError(f"{where}.bits: {d['bits']} bits are not supported; choose 4 or 8")
        spec["bits"] = d["bits"]
    if "mode" in d:
        if check_type(d["mode"], str, f"{where}.mode") not in MODES:
            raise SpecError(f"{where}.mode: {d['mode']!r} unknown; choose one of {list(MODES)}")
        spec["symmetric"] = MODES[d["mode"]]
    if "per_channel" in d:
        spec["per_channel"] = check_type(d["per_channel"], bool, f"{where}.per_channel")
        if kind == "activations" and spec["per_channel"]:
            raise SpecError(f"{where}.per_channel: per-channel activation quantizers are not supported; use false")
    if "range" in d:
        rng = _range(d["range"], f"{where}.range")
        if rng is None:
            raise SpecError(f"{where}.range: give its 'type'; choose one of {list(RANGE_TYPES)}")
        spec["range"] = {k: v for k, v in vars(rng).items() if v is not None}
    return spec


def _scope_rules(overrides: Any, recipe: Recipe) -> tuple[Rule, ...]:
    check_keys(overrides, set(KINDS), "compression.scope_overrides")
    rules = []
    for kind in KINDS:
        for scope, d in check_type(overrides.get(kind, {}), dict, f"compression.scope_overrides.{kind}").items():
            where = f'compression.scope_overrides.{kind}["{scope}"]'
            spec = _spec(d, where, kind, frozenset({"range"} if kind == "activations" else ()))
            if not recipe.recalibrate and set(spec) - {"bits"}:
                raise SpecError(f"{where}: recipe {recipe.name} {NNCF_OWN}")
            rules.append(Rule.from_dict({"scope": _regex(scope, where), "quantizer_kind": kind, "spec": spec}, where))
    return tuple(rules)


def _regex(scope: str, where: str) -> str:
    """``{re}REGEX`` -> REGEX (checked); a plain op name -> its escaped exact match."""
    if not scope.startswith("{re}"):
        return re.escape(scope)
    pattern = scope[len("{re}"):]
    try:
        re.compile(pattern)
    except re.error as e:
        raise SpecError(f"{where}: invalid regex {pattern!r}: {e}") from None
    return pattern


def _ignored_scope(scopes: Any) -> nncf.IgnoredScope:
    scopes = [scopes] if isinstance(scopes, str) else check_type(scopes, list, "compression.ignored_scopes")
    names, patterns = [], []
    for i, scope in enumerate(scopes):
        where = f"compression.ignored_scopes[{i}]"
        check_type(scope, str, where)
        if scope.startswith("{re}"):
            patterns.append(_regex(scope, where))
        else:
            names.append(scope)
    return nncf.IgnoredScope(names=names, patterns=patterns)


# ------------------------------------------------------------------ overrides
def _apply_compression(recipe: Recipe, comp: dict) -> tuple[Recipe, Optional[nncf.IgnoredScope]]:
    if recipe.weight_compression is not None:
        rng = comp.get("initializer", {}).get("range", {})
        used = sorted(set(comp) - {"algorithm", "initializer"}) + [f"initializer.range.{k}" for k in rng
                                                                   if k != "num_init_samples"]
        if used:
            raise SpecError(f"compression.{used[0]}: recipe {recipe.name} is weight-only (nncf.compress_weights); "
                            f"only initializer.range.num_init_samples applies")
        return recipe, None

    preset = comp.get("preset")
    if preset is not None and preset not in PRESETS:
        raise SpecError(f"compression.preset: {preset!r} unknown; choose one of {list(PRESETS)}")
    rng = _range(comp.get("initializer", {}).get("range", {}), "compression.initializer.range",
                 frozenset({"num_init_samples", "type", "params"}))
    weights = _spec(comp.get("weights", {}), "compression.weights", "weights")
    acts = _spec(comp.get("activations", {}), "compression.activations", "activations")
    if preset is not None:  # NNCF's presets: defaults under explicit modes
        weights.setdefault("symmetric", True)
        acts.setdefault("symmetric", preset == "performance")

    nncf_settings = recipe.nncf
    if recipe.recalibrate:
        if preset is not None:
            nncf_settings = replace(nncf_settings, preset=preset)
        if rng is not None:
            acts["range"] = rng
    else:  # NNCF places and ranges the quantizers: express everything as NNCF settings
        for key, nncf_value in (("symmetric", True), ("per_channel", True)):
            if weights.get(key, nncf_value) != nncf_value:
                field = "mode" if key == "symmetric" else key
                raise SpecError(f"compression.weights.{field}: recipe {recipe.name} {NNCF_OWN} "
                                f"(NNCF's weights are symmetric per-channel)")
        if "symmetric" in acts:
            nncf_settings = replace(nncf_settings, preset="performance" if acts["symmetric"] else "mixed")
        if rng is not None:
            nncf_settings = replace(nncf_settings, range=rng)
    recipe = replace(recipe, nncf=nncf_settings,
                     weights=replace(recipe.weights, **weights),
                     activations=replace(recipe.activations, **acts))
    if "scope_overrides" in comp:
        recipe = recipe.with_rules(_scope_rules(comp["scope_overrides"], recipe))
    ignored = _ignored_scope(comp["ignored_scopes"]) if "ignored_scopes" in comp else None
    return recipe, ignored


__all__ = ["QuantizeConfig", "load_config", "DEFAULT_RECIPE"]
