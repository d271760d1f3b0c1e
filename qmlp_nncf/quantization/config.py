"""NNCF-style JSON configs: NNCF 2.x sample configs as users have them, plus a ``qmlp`` key.

NNCF 3 removed ``NNCFConfig``; ``load_config`` reads such a file (``//`` and ``/* */`` comments and
trailing commas allowed, as NNCF 2.x's jstyleson did) into a :class:`QuantizeConfig`: the
:class:`Recipe` (and an ``nncf.IgnoredScope``) for :func:`qmlp_nncf.quantization.quantize`, and the
model / data / training keys of NNCF 2.x's sample scripts. Schema (every key optional, but
``compression`` needs its ``algorithm``; docs/config.md has the complete tables)::

    model        str   timm / zoo name         checkpoint | weights  str  path, relative to the config file
    pretrained   bool  num_classes int         model_params {timm kwargs}
    input_info   {"sample_size": [1, 1, 28, 28]}           (or a list holding this one object)
    dataset | dataset_dir | data   "fashion-mnist", a dataset name or a folder
    epochs, batch_size, workers, seed, weight_decay, optimizer {"base_lr", "weight_decay", ...}
    target_device  "ANY" | "CPU" | "GPU" | "NPU" | "CPU_SPR"  (NNCF 2.x's "VPU" = NPU, "TRIAL" = ANY)
    compression  {"algorithm": "quantization",                (or a list holding this one object)
                  "preset": "performance" | "mixed",
                  "initializer": {"range": {"num_init_samples": 300,
                                            "type": "min_max" | "mean_min_max" | "percentile",
                                            "params": {"min_percentile": 0.1, "max_percentile": 99.9}},
                                  "precision": {"type": "manual",
                                                "bitwidth_per_scope": [[4, "SCOPE|WEIGHT"], [8, "SCOPE|OUTPUT"]]}},
                  "weights" | "activations": {"bits": 4 | 8, "mode": "symmetric" | "asymmetric",
                                              "per_channel": bool},
                  "scope_overrides": {"weights": {SCOPE: {bits, mode, per_channel}},
                                      "activations": {SCOPE: {bits, mode, range: {type, params}}}},
                  "ignored_scopes": [SCOPE, ...], "validate_scopes": bool,
                  "quantize_inputs": bool, "quantize_outputs": false}
    qmlp         {"recipe": NAME or path.json, "rules": [rule, ...], "calibration_size": 300,
                  "range_tuning": {"steps": 300, "lr": 0.001, "batch_size": 64, "seed": 0,
                                   "weight_rounding_lr": 0.0003, "drop_prob": 0.5, "block_loss": 1.0} | false}

Semantics: start from ``qmlp.recipe`` (default ``nncf_default_w8a8``, or ``load_config(recipe=...)``)
and override it. ``preset`` sets NNCF's preset and the default modes (both: symmetric weights;
performance: symmetric activations, mixed: asymmetric); an explicit ``mode`` wins.
``initializer.range`` becomes the default activation range (``percentile``: NNCF 2.x's mirror-image
pair ``min/max_percentile``, kept as ``max_percentile``); ``num_init_samples`` the calibration size.
``weights``/``activations`` override the recipe's default specs. ``qmlp.rules`` are appended to the
recipe's rules, then one rule per ``scope_overrides`` entry, restricted to its kind of quantizer,
then one bits rule per ``bitwidth_per_scope`` entry (later rules win: op-name overrides beat role
rules, NNCF 2.x's manual precision beats both). ``qmlp.range_tuning`` replaces the recipe's range
tuning (``{}``: the defaults) or, with ``false``, turns it off.

SCOPE is ``{re}REGEX``, an exact op name as ``nncf.build_graph`` lists it
(``blocks/0/mlp_channels/fc1/linear/0``), or an NNCF 2.x scope name, translated to the NNCF 3 op
name: ``MlpMixer/ModuleList[blocks]/ResBlock[0]/Mlp[mlp_channels]/NNCFLinear[fc1]/linear_0`` ->
``blocks/0/mlp_channels/fc1/linear/0`` (the model class is dropped, ``Type[name]`` -> ``name``,
``op_N`` -> ``op/N``, ``__add__`` -> ``add``, ``__iadd__`` -> ``add_`` ...; ``/nncf_model_input_0``
is the model's input). A scope override's regex must match the whole name of the op the quantizer
sits on or of a Linear it feeds; ``ignored_scopes`` go to ``nncf.IgnoredScope`` (regex matched from
the start of the name) and remove an op's weight and input quantizers. Scopes that match nothing
fail in ``quantize``, which has the model.

NNCF 2.x keys that mean nothing here (distributed training, logging, export flags, schedules,
``overflow_fix``, ``batchnorm_adaptation`` ...) are listed in ``QuantizeConfig.ignored_keys`` and
logged once; NNCF 2.x keys that would change the quantization and cannot be honoured (``signed``,
``target_scopes``, HAWQ / AutoQ precision search, ``quantize_outputs: true`` ...) are errors, as
are unknown keys. The ``nncf_*`` baseline recipes keep NNCF's own quantizers (``recalibrate:
false``): there the activation mode picks NNCF's preset, the range becomes NNCF's global estimator,
and otherwise only ``bits`` can change. Every error is one :class:`SpecError` naming the place
(``compression.activations.bits``) and the valid choices.
"""
from __future__ import annotations

import difflib
import json
import math
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import nncf

from .range_tuning import RangeTuning
from .recipes import PRESETS, Recipe, check_overflow_fix, load_recipe
from .rules import Rule, rules_from_list
from .specs import RangeSpec, SpecError, check_keys, check_type

DEFAULT_RECIPE = "nncf_default_w8a8"
MAX_CONFIG_BYTES = 16 * 2**20  # a config is a few KB; refuse anything this big before reading it
MAX_MESSAGE = 2000  # characters of one error message (a huge value quoted in it is cut)

# top-level keys read into QuantizeConfig
TOP_KEYS = {"model", "checkpoint", "weights", "pretrained", "model_params", "num_classes", "input_info",
            "dataset", "dataset_dir", "data", "epochs", "batch_size", "workers", "seed", "weight_decay",
            "optimizer", "target_device", "disable_compression", "compression", "qmlp"}
# top-level keys of NNCF 2.x's schema and of its sample scripts (examples/torch|tensorflow, their
# configs and the argparse dests merged into them) that mean nothing here: accepted, listed, ignored
NNCF2_IGNORED_TOP = {
    "accuracy_aware_training", "compression_lr_multiplier", "disable_shape_matching", "log_dir",
    "augmentations", "backbone_checkpoint", "basenet", "batch_size_init", "batch_size_val", "batchnorm",
    "bootstrapNAS", "checkpoint_save_dir", "config", "cpu_only", "dataset_preprocessing_preset", "dataset_type",
    "disable_tensor_float_32_execution", "dist_backend", "dist_url", "eval_only", "export_to_ir_via_onnx",
    "gpu_id", "imshow_batch", "iter_size", "max_iter", "metrics_dump", "mixed_precision", "mode",
    "multiprocessing_distributed", "no_strip_on_export", "num_mock_images", "preprocessing", "print_freq",
    "print_step", "rank", "resuming_checkpoint_path", "save_freq", "ssd_params", "start_epoch", "test_anno",
    "test_every_n_epochs", "test_imgs", "test_interval", "to_onnx", "train_anno", "train_imgs", "weighing",
    "world_size"}
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
TARGET_DEVICES = ("ANY", "CPU", "GPU", "NPU", "CPU_SPR")  # nncf.TargetDevice
DEVICE_ALIASES = {"VPU": "NPU", "TRIAL": "ANY"}  # NNCF 2.x: VPU was renamed NPU; TRIAL = no HW constraints
NNCF_OWN = "keeps NNCF's own quantizers (recalibrate: false), so only their 'bits' can change; use a qmlp_* recipe"
IGNORED_REASONS = {
    "compression.initializer.batchnorm_adaptation": "a BatchNorm statistics pass of NNCF 2.x's training init; "
                                                    "this PTQ runs fast bias correction instead",
    "compression.export_to_onnx_standard_ops": "export goes to OpenVINO IR",
}
INPUT_SCOPE = r"[^/.]+"  # the model's input node: NNCF 3 names it after forward()'s argument (x)
MATMUL_OR_CONV = {"linear", "matmul", "bmm", "addmm", "baddbmm", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d"}
# NNCF 2.x traced Tensor operators under their dunder names; NNCF 3 records the torch function
DUNDER_OPS = {"__add__": "add", "__radd__": "add", "__iadd__": "add_", "__sub__": "sub", "__isub__": "sub_",
              "__mul__": "mul", "__rmul__": "mul", "__imul__": "mul_", "__truediv__": "div", "__itruediv__": "div_",
              "__matmul__": "matmul", "__neg__": "neg", "__pow__": "pow"}


@dataclass(frozen=True)
class QuantizeConfig:
    """A loaded config: the recipe to run (overrides applied), NNCF's ignored scope, the model, data and
    training settings of the NNCF 2.x sample scripts (None / empty: not in the config), and the NNCF 2.x
    keys that were accepted but mean nothing here."""

    recipe: Recipe
    ignored_scope: Optional[nncf.IgnoredScope] = None
    model: Optional[str] = None  # timm / zoo name
    checkpoint: Optional[str] = None  # weights file ("checkpoint" or NNCF 2.x "weights"), resolved; URLs as is
    input_shape: Optional[tuple] = None  # input_info.sample_size
    num_classes: Optional[int] = None
    pretrained: Optional[bool] = None  # NNCF 2.x: start from the model zoo's pretrained weights
    model_kwargs: dict = field(default_factory=dict)  # NNCF 2.x "model_params": timm.create_model keywords
    data: Optional[str] = None  # "fashion-mnist", another dataset name as given, or a folder (resolved)
    data_dir: Optional[str] = None  # the Fashion-MNIST IDX folder ("dataset": "fashion-mnist" + "dataset_dir")
    training: dict = field(default_factory=dict)  # any of epochs, batch_size, lr, weight_decay, workers, seed
    target_device: Optional[str] = None  # ANY | CPU | GPU | NPU | CPU_SPR
    ignored_keys: tuple = ()  # dotted paths of the accepted-but-ignored NNCF 2.x keys, each once


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def load_config(path_or_dict: str | Path | dict, *, recipe: Optional[str | Recipe] = None,
                log: Optional[Callable[[str], None]] = None) -> QuantizeConfig:
    """Read and validate a config file (or an already parsed dict); see the module docstring.

    ``recipe`` is the starting recipe when the config has no ``qmlp.recipe`` (default
    ``nncf_default_w8a8``; naming a different one in both places is an error). ``log`` gets one line
    listing the ignored NNCF 2.x keys, and notes (default: printed to stderr).
    """
    if isinstance(path_or_dict, dict):
        data, base_dir, label = path_or_dict, None, "config"
    elif isinstance(path_or_dict, (str, Path)):
        path = Path(path_or_dict)
        data, base_dir, label = read_config_file(path), path.parent, path.stem
        if not isinstance(data, dict):
            raise SpecError(f"config {path}: expected a JSON object {{...}} at the top level, got {_kind(data)}")
    else:
        raise SpecError(f"config: expected a file path or a dict, got {type(path_or_dict).__name__}")
    try:
        cfg, notes = _build(data, base_dir, label, recipe)
    except RecursionError:
        raise SpecError(f"config {label}: nested too deeply") from None
    except MemoryError:
        raise SpecError(f"config {label}: out of memory while reading it") from None
    except SpecError as e:
        msg = str(e)
        if len(msg) <= MAX_MESSAGE:
            raise
        raise SpecError(f"{msg[:MAX_MESSAGE - 300]} [... {len(msg) - MAX_MESSAGE + 100} characters cut ...] "
                        f"{msg[-200:]}") from None
    for note in notes:
        (log or _stderr)(note)
    return cfg


# ------------------------------------------------------------------ reading
def read_config_file(path: Path) -> Any:
    """The parsed JSON of ``path``: comments and trailing commas allowed; any problem is one SpecError."""
    try:
        if not path.exists():
            raise SpecError(f"config file {path} does not exist")
        if not path.is_file():
            raise SpecError(f"config {path}: not a regular file")
        size = path.stat().st_size
    except OSError as e:
        raise SpecError(f"config {path}: cannot read it: {e.strerror or e}") from None
    too_big = f"config {path}: {{}} bytes is too large for a config (at most {MAX_CONFIG_BYTES} = 16 MB); " \
              f"is this the right file?"
    if size > MAX_CONFIG_BYTES:
        raise SpecError(too_big.format(size))
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise SpecError(f"config {path}: cannot read it: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SpecError(too_big.format(f"more than {MAX_CONFIG_BYTES}"))
    return parse_config_text(raw, f"config {path}")


def parse_config_text(raw: bytes | str, label: str = "config") -> Any:
    """JSON with NNCF 2.x's jstyleson extensions (``//`` and ``/* */`` comments, trailing commas)."""
    if isinstance(raw, bytes):
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise SpecError(f"{label}: UTF-16 text; save it as UTF-8")
        if b"\x00" in raw:
            raise SpecError(f"{label}: binary data (NUL bytes at offset {raw.index(0)}), not a JSON text file")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise SpecError(f"{label}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                            f"save it as UTF-8") from None
    else:
        text = raw
    if not text.strip():
        raise SpecError(f"{label}: empty file")
    try:
        try:
            return _json_loads(text)
        except json.JSONDecodeError as plain_error:
            stripped = strip_json_comments(text)
            if stripped == text:
                raise SpecError(f"{label}: invalid JSON: {plain_error}") from None
            try:
                return _json_loads(stripped)
            except json.JSONDecodeError as e:
                raise SpecError(f"{label}: invalid JSON (comments removed): {e}") from None
    except SpecError as e:
        raise SpecError(str(e) if str(e).startswith(label) else f"{label}: {e}") from None
    except RecursionError:
        raise SpecError(f"{label}: nested too deeply (arrays/objects inside each other beyond Python's "
                        f"recursion limit); a config is a few levels deep") from None
    except MemoryError:
        raise SpecError(f"{label}: out of memory while parsing it") from None
    except ValueError as e:  # e.g. an integer literal longer than Python's int digits limit
        raise SpecError(f"{label}: invalid JSON: {e}") from None


_STRING = r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
_COMMENT = re.compile(_STRING + r"|//[^\n]*|/\*.*?\*/|/\*", re.S)
_TRAILING_COMMA = re.compile(_STRING + r"|(?<=[^\s\[{,:])(\s*),(\s*[\]}])")  # a comma after a value


def strip_json_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments and trailing commas (before ``]`` / ``}``) blanked,
    outside strings only; lines and columns stay where they were (for JSON error positions)."""

    def comment(m: re.Match) -> str:
        s = m.group()
        if s[0] == '"':
            return s
        if s == "/*":
            raise SpecError(f"unterminated /* comment at line {text.count(chr(10), 0, m.start()) + 1}")
        return re.sub(r"[^\n]", " ", s)

    text = _COMMENT.sub(comment, text)
    return _TRAILING_COMMA.sub(lambda m: m.group() if m.group(1) is None else f"{m.group(1)} {m.group(2)}", text)


def _no_duplicates(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise SpecError(f"key {dup!r} appears twice in one object (JSON would keep only the last); give it once")
    return d


def _no_constant(name: str):
    raise SpecError(f"{name} is not a JSON number")


def _json_loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a number ({value!r})" if isinstance(value, (int, float)) else type(value).__name__)


def _keys(d: Any, used: set, where: str, ignored: list, *, ignorable: set = frozenset(),
          unsupported: Optional[dict] = None) -> dict:
    """Check the keys of object ``d``: ``used`` ones are read, ``ignorable`` ones (NNCF 2.x keys that mean
    nothing here) are appended to ``ignored``, ``unsupported`` ones fail with their reason, others are
    unknown (a typo: the valid keys and the closest one are named)."""
    unsupported = unsupported or {}
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object, got {_kind(d)}")
    prefix = "" if where == "config" else f"{where}."
    for key in d:
        if key in unsupported:
            raise SpecError(f"{prefix}{key}: {unsupported[key]}")
    unknown = sorted(str(k) for k in d if k not in used and k not in ignorable)
    if unknown:
        close = (difflib.get_close_matches(unknown[0], sorted(used), n=1, cutoff=0.7)  # the keys read here first
                 or difflib.get_close_matches(unknown[0], sorted(ignorable | set(unsupported)), n=1, cutoff=0.7))
        hint = f"; did you mean {close[0]!r}?" if close else ""
        others = " (and NNCF 2.x's own keys, accepted and ignored: see docs/config.md)" if ignorable else ""
        raise SpecError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(used)}{others}{hint}")
    ignored.extend(prefix + k for k in d if k in ignorable)
    return d


# ------------------------------------------------------------------ the config
def _build(data: dict, base_dir: Optional[Path], label: str,
           recipe_arg: Optional[str | Recipe]) -> tuple[QuantizeConfig, list[str]]:
    ignored: list[str] = []
    notes: list[str] = []
    _keys(data, TOP_KEYS, "config", ignored, ignorable=NNCF2_IGNORED_TOP)
    if "disable_compression" in data:
        if check_type(data["disable_compression"], bool, "disable_compression"):
            raise SpecError("disable_compression: true asks for the float model; this config quantizes "
                            "(remove the key)")
        ignored.append("disable_compression")

    qmlp = check_keys(data.get("qmlp", {}), {"recipe", "rules", "calibration_size", "range_tuning"}, "qmlp")
    recipe = _base_recipe(qmlp.get("recipe"), recipe_arg, base_dir)
    if "rules" in qmlp:
        recipe = recipe.with_rules(rules_from_list(qmlp["rules"], "qmlp.rules"))
    if "range_tuning" in qmlp:
        recipe = replace(recipe, range_tuning=_range_tuning(qmlp["range_tuning"], recipe))
    comp = _compression(data.get("compression"), ignored)
    recipe, ignored_scope = _apply_compression(recipe, comp)
    calibration = _calibration_size(comp, qmlp)
    if calibration is not None:
        recipe = replace(recipe, calibration_size=calibration)

    model = check_type(data.get("model", ""), str, "model") or None
    pretrained = data.get("pretrained")
    if pretrained is not None:
        check_type(pretrained, bool, "pretrained")
    num_classes = data.get("num_classes")
    if num_classes is not None and check_type(num_classes, int, "num_classes") < 1:
        raise SpecError(f"num_classes: must be >= 1, got {num_classes}")
    model_kwargs = dict(check_type(data.get("model_params", {}), dict, "model_params"))
    data_spec, data_dir = _data(data, base_dir)
    cfg = QuantizeConfig(
        recipe=replace(recipe, name=f"{recipe.name}+{label}"), ignored_scope=ignored_scope, model=model,
        checkpoint=_checkpoint(data, base_dir), input_shape=_input_shape(data.get("input_info"), ignored),
        num_classes=num_classes, pretrained=pretrained, model_kwargs=model_kwargs, data=data_spec,
        data_dir=data_dir, training=_training(data, ignored), target_device=_target_device(data, notes),
        ignored_keys=tuple(dict.fromkeys(ignored)))
    if cfg.ignored_keys:
        listed = ", ".join(k + (f" ({IGNORED_REASONS[k]})" if k in IGNORED_REASONS else "") for k in cfg.ignored_keys)
        notes.insert(0, f"config: ignored NNCF 2.x keys: {listed}")
    return cfg, notes


def _base_recipe(name: Optional[str], recipe_arg: Optional[str | Recipe], base_dir: Optional[Path]) -> Recipe:
    if name is not None:
        check_type(name, str, "qmlp.recipe")
    if isinstance(recipe_arg, Recipe):
        if name is not None and name != recipe_arg.name:
            raise SpecError(f"qmlp.recipe: the config names {name!r}, the caller recipe {recipe_arg.name!r}; give one")
        return recipe_arg
    if recipe_arg is not None:
        if name is not None and name != recipe_arg:
            raise SpecError(f"qmlp.recipe: the config names {name!r}, the caller {recipe_arg!r}; give one")
        name = recipe_arg
    name = name or DEFAULT_RECIPE
    if name.endswith(".json") and base_dir is not None and (base_dir / name).is_file():
        name = str(base_dir / name)
    try:
        return load_recipe(name)
    except SpecError as e:
        raise SpecError(f"qmlp.recipe: {e}") from None


def _resolve(value: str, base_dir: Optional[Path]) -> str:
    """A relative path that exists next to the config -> that path; anything else as given."""
    if base_dir is not None and value and not Path(value).is_absolute() and (base_dir / value).exists():
        return str(base_dir / value)
    return value


def _dataset_name(value: str) -> str:
    return "fashion-mnist" if value.lower().replace("_", "-") in ("fashion-mnist", "fashionmnist") else value


def _data(d: dict, base_dir: Optional[Path]) -> tuple[Optional[str], Optional[str]]:
    """(data, data_dir) from NNCF 2.x's ``dataset`` (a name) / ``dataset_dir`` (its folder) and our ``data``."""
    values = {k: check_type(d[k], str, k) for k in ("data", "dataset_dir", "dataset") if d.get(k) is not None}
    if "data" in values and "dataset_dir" in values and values["data"] != values["dataset_dir"]:
        raise SpecError(f"data and dataset_dir disagree ({values['data']!r}, {values['dataset_dir']!r}); give one")
    folder = values.get("data", values.get("dataset_dir"))
    name = values.get("dataset")
    if folder is None and name is None:
        return None, None

    def spec(value: str) -> str:
        return "fashion-mnist" if _dataset_name(value) == "fashion-mnist" else _resolve(value, base_dir)

    if folder is None or name is None:
        return spec(folder if name is None else name), None
    folder_key = "data" if "data" in values else "dataset_dir"
    if _dataset_name(folder) == _dataset_name(name):
        return spec(name), None
    if _dataset_name(name) == "fashion-mnist":  # the folder of its IDX files
        return "fashion-mnist", _resolve(folder, base_dir)
    if name.lower() == "imagenet":  # NNCF 2.x reads ImageNet as an ImageFolder root with train/ and val/
        return _resolve(folder, base_dir), None
    raise SpecError(f"dataset {name!r} with {folder_key} {folder!r}: only 'imagenet' (an ImageFolder root with "
                    f"train/ and val/) or 'fashion-mnist' (the folder of its IDX files) combine with a folder here; "
                    f"give the folder alone (an ImageFolder root) or the name alone")


def _checkpoint(d: dict, base_dir: Optional[Path]) -> Optional[str]:
    ckpt = {k: check_type(d[k], str, k) for k in ("checkpoint", "weights") if d.get(k) is not None}
    if len(set(ckpt.values())) > 1:
        raise SpecError(f"checkpoint and weights (NNCF 2.x's name) disagree ({ckpt['checkpoint']!r}, "
                        f"{ckpt['weights']!r}); give one")
    value = next(iter(ckpt.values()), None)
    if not value:
        return None
    if "://" in value or base_dir is None or Path(value).is_absolute():
        return value
    return str(base_dir / value)


def _input_shape(info: Any, ignored: list) -> Optional[tuple]:
    if info is None:
        return None
    if isinstance(info, list):
        if len(info) != 1:
            raise SpecError(f"input_info: one input only, got a list of {len(info)}; give one object "
                            f"{{\"sample_size\": [1, 1, 28, 28]}}")
        info = info[0]
    _keys(info, {"sample_size", "type"}, "input_info", ignored, ignorable={"filler"},
          unsupported={"keyword": "inputs passed to forward() by keyword are not supported; the input is "
                                  "passed positionally"})
    if info.get("type", "float") not in ("float", "float32"):
        raise SpecError(f"input_info.type: {info['type']!r}: only float inputs are supported ('float')")
    if "sample_size" not in info:
        raise SpecError("input_info.sample_size: required, e.g. [1, 1, 28, 28]")
    size = check_type(info["sample_size"], list, "input_info.sample_size")
    for i, dim in enumerate(size):
        if check_type(dim, int, f"input_info.sample_size[{i}]") < 1:
            raise SpecError(f"input_info.sample_size[{i}]: dimensions must be >= 1, got {dim}")
    return tuple(size)


def _number(value: Any, where: str, positive: bool) -> float:
    check_type(value, (int, float), where)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise SpecError(f"{where}: must be {'> 0' if positive else '>= 0'}, got {value}")
    return value


def _agree(found: dict, what: str) -> Any:
    if len(set(found.values())) > 1:
        raise SpecError(f"{' and '.join(found)} disagree ({', '.join(map(str, found.values()))}); give one {what}")
    return next(iter(found.values()), None)


def _training(d: dict, ignored: list) -> dict:
    """NNCF 2.x sample-script hyperparameters -> TrainConfig-style keys (only those given)."""
    training: dict = {}
    for key, low in (("epochs", 1), ("batch_size", 1), ("workers", 0)):
        if d.get(key) is not None:
            if check_type(d[key], int, key) < low:
                raise SpecError(f"{key}: must be >= {low}, got {d[key]}")
            training[key] = d[key]
    if d.get("seed") is not None:
        training["seed"] = check_type(d["seed"], int, "seed")
    lr, wd = {}, {}
    if d.get("weight_decay") is not None:
        wd["weight_decay"] = _number(d["weight_decay"], "weight_decay", positive=False)
    opt = d.get("optimizer")
    if opt is not None:
        check_type(opt, dict, "optimizer")  # free-form in NNCF 2.x: every key but the lr / wd ones is ignored
        for key, value in opt.items():
            where = f"optimizer.{key}"
            if key == "base_lr":
                lr[where] = _number(value, where, positive=True)
            elif key == "weight_decay":
                wd[where] = _number(value, where, positive=False)
            elif key in ("schedule_params", "optimizer_params") and isinstance(value, dict):
                for sub, v in value.items():
                    if (key, sub) in (("schedule_params", "base_lr"), ("optimizer_params", "lr")):
                        lr[f"{where}.{sub}"] = _number(v, f"{where}.{sub}", positive=True)
                    elif (key, sub) == ("optimizer_params", "weight_decay"):
                        wd[f"{where}.{sub}"] = _number(v, f"{where}.{sub}", positive=False)
                    else:
                        ignored.append(f"{where}.{sub}")
            else:
                ignored.append(where)
    for key, found in (("lr", lr), ("weight_decay", wd)):
        value = _agree(found, key)
        if value is not None:
            training[key] = value
    return training


def _target_device(d: dict, notes: list) -> Optional[str]:
    value = d.get("target_device")
    if value is None:
        return None
    check_type(value, str, "target_device")
    if value not in TARGET_DEVICES and value not in DEVICE_ALIASES:
        raise SpecError(f"target_device: {value!r} unknown; choose one of {list(TARGET_DEVICES)} "
                        f"(NNCF 2.x's 'VPU' is read as NPU, 'TRIAL' as ANY)")
    device = DEVICE_ALIASES.get(value, value)
    if device not in ("ANY", "CPU"):
        notes.append(f"config: target_device {value}: kept in cfg.target_device, but quantize() places the "
                     f"quantizers as for ANY (it does not pass a target device to nncf.quantize)")
    return device


# ------------------------------------------------------------------ compression
def _compression(comp: Any, ignored: list) -> dict:
    """Validate the ``compression`` object; returns it normalised (NNCF 2.x-only keys dropped)."""
    if comp is None:
        return {}
    if isinstance(comp, list):
        if len(comp) != 1:
            raise SpecError(f"compression: expected one algorithm (quantization), got a list of {len(comp)}")
        comp = comp[0]
    if isinstance(comp, dict) and comp.get("algorithm") != "quantization":
        raise SpecError(f"compression.algorithm: {comp.get('algorithm')!r} is not supported; valid: ['quantization']")
    _keys(comp, COMPRESSION_KEYS, "compression", ignored, ignorable=COMPRESSION_IGNORED,
          unsupported={"target_scopes": "quantizing only some scopes is not supported; list the others in "
                                        "ignored_scopes"})
    comp = dict(comp)
    check_overflow_fix(comp.get("overflow_fix"), "compression.overflow_fix")
    for key in ("export_to_onnx_standard_ops", "validate_scopes", "quantize_inputs", "quantize_outputs"):
        if key in comp:
            check_type(comp[key], bool, f"compression.{key}")
    if comp.get("quantize_outputs"):
        raise SpecError("compression.quantize_outputs: quantizing the model outputs is not supported (quantize() "
                        "does not ask nncf.quantize for output quantizers); use false")
    init = dict(_keys(comp.get("initializer", {}), {"range", "precision"}, "compression.initializer", ignored,
                      ignorable={"batchnorm_adaptation"}))
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
            group = _keys(comp[kind], GROUP_KEYS, where, ignored, ignorable=GROUP_IGNORED, unsupported=unsupported)
            comp[kind] = {k: v for k, v in group.items() if k in GROUP_KEYS}
    for key in COMPRESSION_IGNORED:
        comp.pop(key, None)
    return comp


def _precision(prec: Any, ignored: list) -> dict:
    where = "compression.initializer.precision"
    _keys(prec, PRECISION_KEYS, where, [])
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
        raise SpecError(f"{where}: expected an object, got {_kind(d)}")
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
            rules.append(Rule.from_dict({"scope": _scope_regex(scope, where), "quantizer_kind": kind, "spec": spec},
                                        where))
    return tuple(rules)


# ------------------------------------------------------------------ scopes
_OLD_MODULE = re.compile(r"[^/\[\]]*\[([^/\[\]]+)\]")  # NNCFLinear[fc1] -> fc1
_OLD_OP = re.compile(r"([A-Za-z_]\w*)_(\d+)")  # linear_0 -> linear, 0 ; relu__0 -> relu_, 0
_SUFFIX = re.compile(r"(?:TargetType\.\w+\s+)?(.*)\|(WEIGHT|OUTPUT|INPUT\d*)", re.S)


def translate_nncf2_scope(scope: str) -> Optional[str]:
    """An NNCF 2.x scope name -> the NNCF 3 op name; None when ``scope`` is not in NNCF 2.x's form.

    ``ResNet/Sequential[layer1]/Bottleneck[0]/NNCFConv2d[conv1]/conv2d_0`` -> ``layer1/0/conv1/conv2d/0``:
    the leading model class is dropped, each ``Type[name]`` gives ``name``, the op ``fn_N`` gives
    ``fn/N`` (Tensor operators by NNCF 3's names: ``__add__`` -> ``add``, ``__iadd__`` -> ``add_``).
    A model-level op keeps NNCF 3's leading slash (``ResNet/flatten_0`` -> ``/flatten/0``);
    ``/nncf_model_input_N`` stays as is (the caller maps the model input).
    """
    parts = scope.split("/")
    op = _OLD_OP.fullmatch(parts[-1])
    if len(parts) < 2 or op is None:
        return None
    modules = parts[1:-1] if "[" not in parts[0] else parts[:-1]
    names = []
    for part in modules:
        m = _OLD_MODULE.fullmatch(part)
        if m is None:
            return None
        names.append(m.group(1))
    fn, index = op.groups()
    if fn == "nncf_model_input":
        return f"/nncf_model_input_{index}"
    return "/".join(names) + f"/{DUNDER_OPS.get(fn, fn)}/{index}"


def _scope_regex(scope: str, where: str) -> str:
    """``{re}REGEX`` -> REGEX (checked); an NNCF 2.x scope -> its NNCF 3 op name; a plain op name -> its
    escaped exact match."""
    if scope.startswith("{re}"):
        pattern = scope[len("{re}"):]
        try:
            re.compile(pattern)
        except re.error as e:
            raise SpecError(f"{where}: invalid regex {pattern!r}: {e}") from None
        return pattern
    name = translate_nncf2_scope(scope) or scope
    if name.startswith("/nncf_model_input_"):
        if name != "/nncf_model_input_0":
            raise SpecError(f"{where}: {scope!r}: models with one input only (nncf_model_input_0)")
        return INPUT_SCOPE
    return re.escape(name)


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
        regex = _scope_regex(name, where)
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


def _ignored_scope(scopes: Any, validate: bool) -> nncf.IgnoredScope:
    scopes = [scopes] if isinstance(scopes, str) else check_type(scopes, list, "compression.ignored_scopes")
    names, patterns = [], []
    for i, scope in enumerate(scopes):
        where = f"compression.ignored_scopes[{i}]"
        check_type(scope, str, where)
        if scope.startswith("{re}"):
            patterns.append(_scope_regex(scope, where))
            continue
        name = translate_nncf2_scope(scope) or scope
        if name.startswith("/nncf_model_input_"):
            raise SpecError(f"{where}: to keep the model input in float use compression.quantize_inputs: false")
        names.append(name)
    return nncf.IgnoredScope(names=names, patterns=patterns, validate=validate)


# ------------------------------------------------------------------ overrides
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


def _apply_compression(recipe: Recipe, comp: dict) -> tuple[Recipe, Optional[nncf.IgnoredScope]]:
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
        ignored = _ignored_scope(comp["ignored_scopes"], comp.get("validate_scopes", True))
    return recipe, ignored


__all__ = ["QuantizeConfig", "load_config", "DEFAULT_RECIPE", "read_config_file", "parse_config_text",
           "strip_json_comments", "translate_nncf2_scope"]
