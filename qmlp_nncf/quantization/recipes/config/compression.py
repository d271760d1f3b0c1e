"""The ``compression`` section (NNCF 2.x's quantization algorithm) and the ``qmlp`` overrides it shares
settings with: validated, then applied to a :class:`Recipe`."""
from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from typing import Any, Optional

import nncf

from ...rules.rule import Rule
from ...rules.specs import RangeSpec, SpecError, check_keys, check_type
from ..knobs import RangeTuning
from ..recipe import PRESETS, Recipe, check_overflow_fix
from .nncf_scopes import INPUT_SCOPE, ignored_scope, scope_regex, translate_nncf2_scope
from .reader import check_config_keys, kind_of

COMPRESSION_KEYS = {"algorithm", "preset", "initializer", "weights", "activations", "scope_overrides",
                    "ignored_scopes", "validate_scopes", "quantize_inputs", "quantize_outputs", "overflow_fix"}
COMPRESSION_IGNORED = {"export_to_onnx_standard_ops", "params", "compression_lr_multiplier"}
GROUP_KEYS = {"bits", "mode", "per_channel"}
GROUP_IGNORED = {"logarithm_scale", "validate_scopes"}
SIGNED = ("forcing the sign is not supported: a symmetric quantizer's sign follows its calibration data "
          "here; remove 'signed'")
GROUP_SCOPES = ("per-group scopes are not supported; use compression.ignored_scopes (all quantizers of an op) "
                "or a qmlp rule {\"scope\": ..., \"quantizer_kind\": ..., \"float\": true}")
PRECISION_KEYS = {"type", "bitwidth_per_scope", "bits", "num_data_points", "iter_number", "tolerance",
                  "compression_ratio", "eval_subset_ratio", "warmup_iter_number", "traces_per_layer_path",
                  "dump_init_precision_data", "bitwidth_assignment_mode"}
PRECISION_TYPES = ("manual", "hawq", "autoq")
RANGE_TYPES = ("min_max", "mean_min_max", "percentile")
# NNCF 2.x range types that are one of ours here: activation quantizers are per-tensor, so the min of
# per-channel minima is the minimum; and our percentile estimator is the mean of per-item percentiles
RANGE_ALIASES = {"mixed_min_max": "min_max", "mean_percentile": "percentile"}
MODES = {"symmetric": True, "asymmetric": False}
KINDS = ("weights", "activations")
NNCF_OWN = "keeps NNCF's own quantizers (recalibrate: false), so only their 'bits' can change; use a qmlp_* recipe"
MATMUL_OR_CONV = {"linear", "matmul", "bmm", "addmm", "baddbmm", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d"}
_SUFFIX = re.compile(r"(?:TargetType\.\w+\s+)?(.*)\|(WEIGHT|OUTPUT|INPUT\d*)", re.S)


def compression_section(comp: Any, ignored: list) -> dict:
    """Validate the ``compression`` object; returns it normalised (NNCF 2.x-only keys dropped)."""
    if comp is None:
        return {}
    if isinstance(comp, list):
        if len(comp) != 1:
            raise SpecError(f"compression: expected one algorithm (quantization), got a list of {len(comp)}")
        comp = comp[0]
    if isinstance(comp, dict) and comp.get("algorithm") != "quantization":
        raise SpecError(f"compression.algorithm: {comp.get('algorithm')!r} is not supported; valid: ['quantization']")
    check_config_keys(comp, COMPRESSION_KEYS, "compression", ignored, ignorable=COMPRESSION_IGNORED,
                      unsupported={"target_scopes": "quantizing only some scopes is not supported; list the others "
                                                    "in ignored_scopes"})
    comp = dict(comp)
    check_overflow_fix(comp.get("overflow_fix"), "compression.overflow_fix")
    for key in ("export_to_onnx_standard_ops", "validate_scopes", "quantize_inputs", "quantize_outputs"):
        if key in comp:
            check_type(comp[key], bool, f"compression.{key}")
    if comp.get("quantize_outputs"):
        raise SpecError("compression.quantize_outputs: quantizing the model outputs is not supported (quantize() "
                        "does not ask nncf.quantize for output quantizers); use false")
    init = dict(check_config_keys(comp.get("initializer", {}), {"range", "precision"}, "compression.initializer",
                                  ignored, ignorable={"batchnorm_adaptation"}))
    init.pop("batchnorm_adaptation", None)
    if isinstance(init.get("range"), list):
        raise SpecError("compression.initializer.range: per-scope range lists are not supported; give one object "
                        "and set per-op ranges with scope_overrides (\"range\") or qmlp.rules")
    check_keys(init.get("range", {}), {"num_init_samples", "type", "params"}, "compression.initializer.range")
    if "precision" in init:
        init["precision"] = _precision(init["precision"], ignored)
    comp["initializer"] = init
    for kind in KINDS:
        if kind in comp:
            where = f"compression.{kind}"
            unsupported = {"signed": SIGNED, "ignored_scopes": GROUP_SCOPES, "target_scopes": GROUP_SCOPES}
            if kind == "activations":
                unsupported["unified_scale_ops"] = ("shared scales across an op's inputs are not supported "
                                                    "(remove unified_scale_ops)")
            group = check_config_keys(comp[kind], GROUP_KEYS, where, ignored, ignorable=GROUP_IGNORED,
                                      unsupported=unsupported)
            comp[kind] = {k: v for k, v in group.items() if k in GROUP_KEYS}
    for key in COMPRESSION_IGNORED:
        comp.pop(key, None)
    return comp


def _precision(prec: Any, ignored: list) -> dict:
    where = "compression.initializer.precision"
    check_config_keys(prec, PRECISION_KEYS, where, [])
    kind = check_type(prec.get("type", "manual"), str, f"{where}.type")
    if kind not in PRECISION_TYPES:
        raise SpecError(f"{where}.type: {kind!r} unknown; choose one of {list(PRECISION_TYPES)}")
    if kind != "manual":
        raise SpecError(f"{where}.type: {kind!r} (NNCF 2.x's automatic bit-width search) is not supported; give "
                        f"the bits per quantizer with type 'manual' and bitwidth_per_scope")
    # the other keys configure HAWQ / AutoQ; NNCF 2.x's manual initializer does not read them either
    ignored.extend(f"{where}.{k}" for k in prec if k not in ("type", "bitwidth_per_scope"))
    return {"bitwidth_per_scope": check_type(prec.get("bitwidth_per_scope", []), list, f"{where}.bitwidth_per_scope")}


def _range(d: Any, where: str, keys: frozenset = frozenset({"type", "params"})) -> Optional[RangeSpec]:
    """NNCF 2.x ``{"type": ..., "params": {...}}`` -> RangeSpec; None without a ``type`` (keep the recipe's)."""
    check_keys(d, set(keys), where)
    if "type" not in d:
        if "params" in d:
            raise SpecError(f"{where}.params: give the range 'type' too; choose one of {list(RANGE_TYPES)}")
        return None
    kind = check_type(d["type"], str, f"{where}.type")
    kind = RANGE_ALIASES.get(kind, kind)
    if kind not in RANGE_TYPES:
        raise SpecError(f"{where}.type: {kind!r} unknown; choose one of {list(RANGE_TYPES)} "
                        f"(or NNCF 2.x's {list(RANGE_ALIASES)})")
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


def _bits(value: Any, where: str) -> int:
    if check_type(value, int, where) not in (4, 8):
        raise SpecError(f"{where}: {value} bits are not supported; choose 4 or 8")
    return value


def _spec(d: Any, where: str, kind: str, extra: frozenset = frozenset(), range_at: str = "range") -> dict:
    """NNCF 2.x ``{bits, mode, per_channel}`` (+ ``range`` in scope overrides) -> partial spec dict."""
    check_keys(d, {"bits", "mode", "per_channel"} | extra, where)
    spec: dict = {}
    if "bits" in d:
        spec["bits"] = _bits(d["bits"], f"{where}.bits")
    if "mode" in d:
        if check_type(d["mode"], str, f"{where}.mode") not in MODES:
            raise SpecError(f"{where}.mode: {d['mode']!r} unknown; choose one of {list(MODES)}")
        spec["symmetric"] = MODES[d["mode"]]
    if "per_channel" in d:
        spec["per_channel"] = check_type(d["per_channel"], bool, f"{where}.per_channel")
        if kind == "activations" and spec["per_channel"]:
            raise SpecError(f"{where}.per_channel: per-channel activation quantizers are not supported; use false")
    if "range" in d:
        rng = _range(d["range"], f"{where}.{range_at}")
        if rng is None:
            raise SpecError(f"{where}.{range_at}: give its 'type'; choose one of {list(RANGE_TYPES)}")
        spec["range"] = {k: v for k, v in vars(rng).items() if v is not None}
    return spec


def _override_entry(d: Any, where: str, kind: str) -> tuple[dict, str]:
    """A scope override entry, NNCF 2.x's ``initializer.range`` read as ``range``; (entry, where its range was)."""
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object, got {kind_of(d)}")
    if "signed" in d:
        raise SpecError(f"{where}.signed: {SIGNED}")
    if "initializer" not in d:
        return d, "range"
    if kind == "weights":
        raise SpecError(f"{where}.initializer: per-scope weight ranges are not supported (only activations)")
    init = check_keys(d["initializer"], {"range"}, f"{where}.initializer")
    if "range" in d:
        raise SpecError(f"{where}: give the range once, as 'range' or 'initializer.range'")
    if isinstance(init.get("range"), dict) and "num_init_samples" in init["range"]:
        raise SpecError(f"{where}.initializer.range.num_init_samples: one calibration size serves all "
                        f"quantizers; set compression.initializer.range.num_init_samples")
    entry = {k: v for k, v in d.items() if k != "initializer"}
    if "range" in init:
        entry["range"] = init["range"]
    return entry, "initializer.range"


def _scope_rules(overrides: Any, recipe: Recipe) -> tuple[Rule, ...]:
    check_keys(overrides, set(KINDS), "compression.scope_overrides")
    rules = []
    for kind in KINDS:
        for scope, d in check_type(overrides.get(kind, {}), dict, f"compression.scope_overrides.{kind}").items():
            where = f'compression.scope_overrides.{kind}["{scope}"]'
            entry, range_at = _override_entry(d, where, kind)
            spec = _spec(entry, where, kind, frozenset({"range"} if kind == "activations" else ()), range_at)
            if not recipe.recalibrate and set(spec) - {"bits"}:
                raise SpecError(f"{where}: recipe {recipe.name} {NNCF_OWN}")
            rules.append(Rule.from_dict({"scope": scope_regex(scope, where), "quantizer_kind": kind, "spec": spec},
                                        where))
    return tuple(rules)


def _bitwidth_rules(entries: list) -> tuple[Rule, ...]:
    """NNCF 2.x manual mixed precision ``[[bits, "SCOPE|WEIGHT"], [bits, "SCOPE|OUTPUT"], ...]`` -> bits rules."""
    base = "compression.initializer.precision.bitwidth_per_scope"
    rules, seen = [], {}
    for i, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
            raise SpecError(f"{base}[{i}]: expected [bits, \"SCOPE|WEIGHT\"] (or |OUTPUT, |INPUT), got "
                            f"{json.dumps(entry)[:200]}")
        bits, scope = entry
        where = f'{base}[{i}] "{scope}"'
        bits = _bits(bits, f"{base}[{i}][0]")
        m = _SUFFIX.fullmatch(scope)
        if m is None:
            raise SpecError(f"{where}: end the scope with |WEIGHT (the op's weight quantizer) or |OUTPUT / |INPUT "
                            f"(its activation quantizer), as NNCF 2.x writes them")
        name, suffix = m.groups()
        kind = "weights" if suffix == "WEIGHT" else "activations"
        regex = scope_regex(name, where)
        if regex == INPUT_SCOPE and kind == "weights":
            raise SpecError(f"{where}: the model input has no weight quantizer; use |OUTPUT")
        fn = (translate_nncf2_scope(name) or name).split("/")[-2:-1] if not name.startswith("{re}") else []
        if suffix == "OUTPUT" and fn and fn[0] in MATMUL_OR_CONV:
            raise SpecError(f"{where}: the output quantizer of a {fn[0]} op cannot be told apart from its input "
                            f"quantizer here (a scope reaches both); give the |INPUT of the op that reads it")
        if (regex, kind) in seen and seen[regex, kind][0] != bits:
            j = seen[regex, kind][1]
            raise SpecError(f"{where}: {bits} bits, but entry [{j}] sets {seen[regex, kind][0]} for the same "
                            f"{kind} quantizer(s) of {regex!r} (the |OUTPUT and |INPUT ports of one op are not "
                            f"told apart here)")
        seen[regex, kind] = (bits, i)
        rules.append(Rule.from_dict({"scope": regex, "quantizer_kind": kind, "spec": {"bits": bits}}, where))
    return tuple(rules)


def range_tuning(value, recipe: Recipe) -> Optional[RangeTuning]:
    if value is False:
        return None
    if recipe.weight_compression is not None:
        raise SpecError(f"qmlp.range_tuning: recipe {recipe.name} compresses weights only; it has no quantizer "
                        f"ranges to tune")
    if not isinstance(value, dict):
        raise SpecError(f"qmlp.range_tuning: expected an object (or false), got {type(value).__name__} {value!r}")
    return RangeTuning.from_dict(value, "qmlp.range_tuning")


def ptq_aid(key: str, value, recipe: Recipe):
    """``qmlp.error_correction`` / ``qmlp.reparameterize``: the knobs (``true``: the defaults) or None (``false``)."""
    from ..knobs import ErrorCorrection, Reparameterization

    knobs = {"error_correction": ErrorCorrection, "reparameterize": Reparameterization}[key].from_value(
        value, f"qmlp.{key}")
    if knobs is not None and recipe.weight_compression is not None:
        raise SpecError(f"qmlp.{key}: recipe {recipe.name} compresses weights only; {key} applies to recipes that "
                        f"quantize activations too")
    return knobs


def calibration_size(comp: dict, qmlp: dict) -> Optional[int]:
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


def _overflow_fix(recipe: Recipe, fix: Optional[str]) -> Recipe:
    """NNCF's ``overflow_fix`` (7-bit weight levels for CPUs without VNNI): on NNCF's own quantizers (the nncf_*
    baselines) NNCF applies it; on a qmlp_* recipe it becomes half-range weight specs (``enable``: every 8-bit
    weight, ``first_layer_only``: the patch embedding's), ``disable`` their default."""
    if fix is None:
        return recipe
    if not recipe.recalibrate:
        return replace(recipe, nncf=replace(recipe.nncf, overflow_fix=fix))
    if fix == "enable":
        return replace(recipe, weights=replace(recipe.weights, half_range=True))
    if fix == "first_layer_only":
        return recipe.with_rules((Rule.from_dict({"match": ["weights", "patch_embedding"],
                                                  "spec": {"half_range": True}}, "compression.overflow_fix"),))
    return replace(recipe, weights=replace(recipe.weights, half_range=False))


def apply_compression(recipe: Recipe, comp: dict) -> tuple[Recipe, Optional[nncf.IgnoredScope]]:
    init = comp.get("initializer", {})
    if recipe.weight_compression is not None:
        used = sorted(set(comp) & {"preset", "weights", "activations", "scope_overrides", "ignored_scopes"})
        used += [f"initializer.range.{k}" for k in init.get("range", {}) if k != "num_init_samples"]
        used += ["initializer.precision"] if "precision" in init else []
        if used:
            raise SpecError(f"compression.{used[0]}: recipe {recipe.name} is weight-only (nncf.compress_weights); "
                            f"only initializer.range.num_init_samples applies")
        return recipe, None

    preset = comp.get("preset")
    if preset is not None and preset not in PRESETS:
        raise SpecError(f"compression.preset: {preset!r} unknown; choose one of {list(PRESETS)}")
    rng = _range(init.get("range", {}), "compression.initializer.range",
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
                field_name = "mode" if key == "symmetric" else key
                raise SpecError(f"compression.weights.{field_name}: recipe {recipe.name} {NNCF_OWN} "
                                f"(NNCF's weights are symmetric per-channel)")
        if "symmetric" in acts:
            nncf_settings = replace(nncf_settings, preset="performance" if acts["symmetric"] else "mixed")
        if rng is not None:
            nncf_settings = replace(nncf_settings, range=rng)
    recipe = replace(recipe, nncf=nncf_settings,
                     weights=replace(recipe.weights, **weights),
                     activations=replace(recipe.activations, **acts))
    recipe = _overflow_fix(recipe, comp.get("overflow_fix"))
    if "scope_overrides" in comp:
        recipe = recipe.with_rules(_scope_rules(comp["scope_overrides"], recipe))
    if "precision" in init:
        recipe = recipe.with_rules(_bitwidth_rules(init["precision"]["bitwidth_per_scope"]))
    if comp.get("quantize_inputs") is False:  # NNCF 2.x: no quantizer on the model input node
        recipe = recipe.with_rules((Rule.from_dict({"scope": INPUT_SCOPE, "quantizer_kind": "activations",
                                                    "float": True}, "compression.quantize_inputs"),))
    ignored = None
    if "ignored_scopes" in comp:
        ignored = ignored_scope(comp["ignored_scopes"], comp.get("validate_scopes", True))
    return recipe, ignored
