"""``load_config``: a config file (or dict) -> :class:`QuantizeConfig`; see the package docstring."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import nncf

from ...rules.rule import rules_from_list
from ...rules.specs import SpecError, check_keys, check_type
from ..recipe import Recipe, load_recipe
from .compression import apply_compression, calibration_size, compression_section, ptq_aid, range_tuning
from .reader import check_config_keys, kind_of, read_config_file
from .toplevel import checkpoint, data_source, input_shape, target_device, training_settings

DEFAULT_RECIPE = "nncf_default_w8a8"
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
IGNORED_REASONS = {
    "compression.initializer.batchnorm_adaptation": "a BatchNorm statistics pass of NNCF 2.x's training init; "
                                                    "this PTQ runs fast bias correction instead",
    "compression.export_to_onnx_standard_ops": "export goes to OpenVINO IR",
}


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
    """Read and validate a config file (or an already parsed dict); see the package docstring.

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
            raise SpecError(f"config {path}: expected a JSON object {{...}} at the top level, got {kind_of(data)}")
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


def _build(data: dict, base_dir: Optional[Path], label: str,
           recipe_arg: Optional[str | Recipe]) -> tuple[QuantizeConfig, list[str]]:
    ignored: list[str] = []
    notes: list[str] = []
    check_config_keys(data, TOP_KEYS, "config", ignored, ignorable=NNCF2_IGNORED_TOP)
    if "disable_compression" in data:
        if check_type(data["disable_compression"], bool, "disable_compression"):
            raise SpecError("disable_compression: true asks for the float model; this config quantizes "
                            "(remove the key)")
        ignored.append("disable_compression")

    qmlp = check_keys(data.get("qmlp", {}), {"recipe", "rules", "calibration_size", "range_tuning", "error_correction",
                                             "reparameterize"}, "qmlp")
    recipe = _base_recipe(qmlp.get("recipe"), recipe_arg, base_dir)
    if "rules" in qmlp:
        recipe = recipe.with_rules(rules_from_list(qmlp["rules"], "qmlp.rules"))
    if "range_tuning" in qmlp:
        recipe = replace(recipe, range_tuning=range_tuning(qmlp["range_tuning"], recipe))
    for key in ("error_correction", "reparameterize"):
        if key in qmlp:
            recipe = replace(recipe, **{key: ptq_aid(key, qmlp[key], recipe)})
    comp = compression_section(data.get("compression"), ignored)
    recipe, ignored_scope = apply_compression(recipe, comp)
    calibration = calibration_size(comp, qmlp)
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
    data_spec, data_dir = data_source(data, base_dir)
    device = target_device(data)
    cfg = QuantizeConfig(
        recipe=replace(recipe.for_target(device), name=f"{recipe.name}+{label}"), ignored_scope=ignored_scope,
        model=model,
        checkpoint=checkpoint(data, base_dir), input_shape=input_shape(data.get("input_info"), ignored),
        num_classes=num_classes, pretrained=pretrained, model_kwargs=model_kwargs, data=data_spec,
        data_dir=data_dir, training=training_settings(data, ignored), target_device=device,
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
