"""Post-training quantization with a recipe: ``nncf.quantize`` (global settings) + the rule post-pass,
or ``nncf.compress_weights`` for weight-only recipes."""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional

import nncf
import numpy as np
import torch

from ..checkpoint import is_quantized
from ..models.surgery import family_of_module
from ..ir_file import is_openvino_model
from .postpass.algorithm import compress_weights, post_training
from .postpass.parameters import Decision
from .postpass.torch_backend import TorchBackend
from .recipes import AUTO_HOLDOUT, AutoTarget, Recipe, items_wanted, resolve_recipe
from .roles import GraphRoles
from .scopes import check_ignored_scope
from .specs import SpecError

if TYPE_CHECKING:
    from .auto import AutoResult


def _inputs(calibration_dataset) -> Iterable:
    """The model inputs of ``calibration_dataset``: an ``nncf.Dataset`` gives its ``get_inference_data()`` (the
    ``transform_fn`` applied); a DataLoader or any other iterable gives its items as they are."""
    if isinstance(calibration_dataset, nncf.Dataset):
        return calibration_dataset.get_inference_data()
    try:
        if isinstance(calibration_dataset, (str, bytes)):
            raise TypeError
        return iter(calibration_dataset)  # a torch Dataset iterates through __getitem__
    except TypeError:
        raise TypeError(f"calibration_dataset: {type(calibration_dataset).__name__} is not a dataset; give an "
                        f"nncf.Dataset(loader, transform_fn), a DataLoader or an iterable of images / (image, label)"
                        ) from None


def calibration_items(dataset: Iterable, size: int) -> list[torch.Tensor]:
    """The first ``size`` inputs of ``dataset`` (an ``nncf.Dataset`` or an iterable) as batch-1 tensors. Items may
    be ``(x, label)`` or ``x``; ``x`` a tensor or a numpy array, one image or a batch."""
    items = []
    for item in _inputs(dataset):
        x = item[0] if isinstance(item, (tuple, list)) else item
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"calibration items must be image tensors (or numpy arrays), or (image, label) pairs, got "
                            f"{type(x).__name__}; with nncf.Dataset, make transform_fn return the model's input")
        items.extend(x.split(1) if x.dim() == 4 else [x.unsqueeze(0)])
        if len(items) >= size:
            break
    if not items:
        raise ValueError("the calibration dataset is empty")
    return items[:size]


def short_data_note(recipe: str, have: int, size: int, auto: bool = False) -> str:
    """The one note when the data holds fewer than the ``size`` calibration items ``recipe`` asks for (plus the
    ``AUTO_HOLDOUT`` held-out items of an ``auto:`` search): what runs on the ``have`` there are."""
    if not auto:
        return f"note: {recipe} calibrates on {size} items; the data holds {have}: calibrating on those {have}"
    asks = f"note: {recipe} searches on {size} items and chooses its finish on {AUTO_HOLDOUT} more held out"
    if have > size:
        return f"{asks}; the data holds {have}: the finish is chosen on the {have - size} beyond the search's {size}"
    return (f"{asks}; the data holds {have}: searching on all {have} and choosing the finish on them too "
            f"(give {size + AUTO_HOLDOUT} or more to hold some out)")




@dataclass
class QuantizationResult:
    """What :func:`quantize` returns. ``model``: the NNCF model (a plain torch module with quantizer hooks,
    eval mode; ``nncf.torch.get_config`` / ``ov.convert_model`` work on it), or for an ``openvino.Model`` the
    quantized ``openvino.Model`` (FakeQuantize nodes, compressed weights); ``report``: one dict per
    quantizer (hook, roles, spec, installed and ``calibrated`` range; empty for weight-only recipes);
    ``recipe``: the Recipe that ran; ``range_tuning``: KL before/after, steps and seconds (None without
    tuning); ``seconds``: PTQ wall time; ``family`` and ``calibration_items``."""

    model: object  # torch.nn.Module, or openvino.Model for an OpenVINO input
    report: list[dict]
    recipe: Recipe
    range_tuning: Optional[dict]
    seconds: float
    family: str
    calibration_items: int
    auto: Optional[AutoResult] = None  # the search, for recipe="auto:..."
    corrections: dict = field(default_factory=dict)  # reparameterization / error_correction summaries

    @property
    def recipe_name(self) -> str:
        return self.recipe.name

    @property
    def quantizers(self) -> int:
        return sum(not r["float"] for r in self.report)

    def summary(self) -> dict:
        d = {"recipe": self.recipe.name, "family": self.family, "quantizers": self.quantizers,
             "calibration_items": self.calibration_items, "ptq_time_s": round(self.seconds, 2)}
        if self.range_tuning is not None:
            d["range_tuning"] = self.range_tuning
        d.update(self.corrections)
        if self.auto is not None:
            d["auto"] = {"target": self.auto.target, "kl": self.auto.metrics.kl, "seconds": round(self.auto.seconds, 1),
                         "evaluations": self.auto.evaluations, "complete": self.auto.complete,
                         "stopped": self.auto.stopped, "finish": self.auto.finish, "census": self.auto.census}
        return d


def quantize(model: torch.nn.Module, calibration_dataset, recipe: str | Recipe | AutoTarget = "qmlp_w8a8", *,
             subset_size: Optional[int] = None, ignored_scope: Optional[nncf.IgnoredScope] = None,
             target_device=None, model_type=None, fast_bias_correction: Optional[bool] = None,
             config: Optional[str | dict] = None, extra_rules: tuple = (), auto_max_minutes: float = 15.0,
             log=lambda msg: print(msg, file=sys.stderr), calibration_size: Optional[int] = None) -> QuantizationResult:
    """Quantize ``model`` with a recipe, in ``nncf.quantize``'s calling convention; returns a
    :class:`QuantizationResult` whose ``model`` is a new NNCF model (``model`` is left untouched).

    ``calibration_dataset``: an ``nncf.Dataset(loader, transform_fn)`` (read through its ``get_inference_data()``),
    a DataLoader, or any iterable of images or ``(image, label)`` pairs (take them from the *train* split).
    ``subset_size``: how many images calibrate (default: the recipe's ``calibration_size``; batches are split into
    images). ``calibration_size`` is its deprecated old name.
    ``target_device`` (an ``nncf.TargetDevice`` or its name), ``model_type`` (``nncf.ModelType.TRANSFORMER``) and
    ``fast_bias_correction`` (True / False: NNCF's fast bias correction on / off) go to ``nncf.quantize`` over the
    recipe's own settings; None keeps the recipe's. ``CPU_SPR`` on a torch model, which NNCF's torch backend
    refuses, quantizes the torch model for CPU, and the fused placement's int8 residual stream stands for NNCF's SPR
    pass (an ``openvino.Model`` takes CPU_SPR as it is).
    ``ignored_scope``: an ``nncf.IgnoredScope``; a name or pattern that matches no op raises ``SpecError``.
    ``config`` (an NNCF-style JSON path or dict, see docs/config.md) replaces ``recipe`` and ``ignored_scope`` with
    what it describes.
    ``recipe="auto:w4a4"`` (``auto:w4a8``, ``auto:w8a8``) first searches the specs for this model on the
    calibration items (``quantization.auto``), then calibrates its finishes; both within ``auto_max_minutes``
    (the search gets half; finishes that would overrun are left out, named in ``result.auto.finish["skipped"]``).
    ``result.auto`` then holds the search and ``result.auto.recipe_json`` the recipe, to save and reuse with
    ``--recipe FILE``.

    ``model`` may also be an ``openvino.Model`` (a float IR with one N x C x H x W input): the same recipes, rules
    and configs then run on NNCF's OpenVINO backend (``ov_backend``), scopes use the IR's node names, and
    ``result.model`` is the quantized ``openvino.Model``. Range tuning and ``auto:`` recipes are torch-only.

    Nothing process-wide changes. With hundreds of calibration items, an application may bound the heap's growth
    first (``qmlp_nncf.console.setup_process()``; the ``qmlp`` command and the benchmarks do).
    """
    if calibration_size is not None:
        warnings.warn("quantize(calibration_size=) is deprecated: use subset_size, nncf.quantize's name",
                      DeprecationWarning, stacklevel=2)
        if subset_size is not None and subset_size != calibration_size:
            raise ValueError(f"subset_size={subset_size} and calibration_size={calibration_size} disagree; give "
                             f"subset_size only")
        subset_size = calibration_size
    if subset_size is not None and (isinstance(subset_size, bool) or not isinstance(subset_size, int)
                                    or subset_size < 1):
        raise ValueError(f"subset_size must be a positive int, got {subset_size!r}")
    if config is not None:
        from .config import load_config

        cfg = load_config(config)
        recipe, ignored_scope = cfg.recipe, cfg.ignored_scope
    recipe = resolve_recipe(recipe, target_device=target_device, model_type=model_type,
                            fast_bias_correction=fast_bias_correction, auto_max_minutes=auto_max_minutes)
    if is_openvino_model(model):
        return _quantize_openvino(model, calibration_dataset, recipe, ignored_scope, extra_rules, subset_size, log)
    if is_quantized(model):
        raise ValueError("the model already holds NNCF quantizers; quantize its float model (load the float "
                         "checkpoint, or keep the model you passed to quantize() before)")
    model = model.eval()
    t0 = time.time()
    auto = isinstance(recipe, AutoTarget)
    size = items_wanted(recipe, subset_size) - (AUTO_HOLDOUT if auto else 0)
    items = calibration_items(calibration_dataset, items_wanted(recipe, subset_size))
    if len(items) < items_wanted(recipe, subset_size):
        log(short_data_note(recipe.name, len(items), size, auto))
    items, holdout = items[:size], items[size:]
    family, is_qmlp = family_of_module(model)
    if not auto:
        recipe = recipe.with_rules(tuple(extra_rules))
        _note_unconverted(recipe, family, is_qmlp, log)
    summaries: dict = {}
    search = None
    if not auto and recipe.weight_compression is not None:
        quantized = compress_weights(TorchBackend(), model, recipe, items)
        report: list[dict] = []
    else:
        roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
        check_ignored_scope(ignored_scope, roles)
        if auto:
            from .auto import auto_quantize

            search, kept = auto_quantize(model, items, holdout, recipe, roles, family, ignored_scope, extra_rules, log,
                                         start=t0)
            quantized, decisions, recipe, summaries = kept.quantized, kept.decisions, kept.recipe, kept.summaries
        else:
            quantized, decisions, summaries = post_training(TorchBackend(roles), model, items, recipe, family,
                                                            ignored_scope, log)
        report = [d.to_dict() for d in decisions]
    corrections = {k: v for k, v in summaries.items() if k != "range_tuning"}
    result = QuantizationResult(quantized.eval(), report, recipe, summaries.get("range_tuning"), time.time() - t0,
                                family, len(items), search, corrections)
    log(f"{recipe.name}: quantized {family} model in {result.seconds:.1f} s ({result.quantizers} quantizers)")
    return result


def _note_unconverted(recipe: Recipe, family: str, is_qmlp: bool, log) -> None:
    """The note when a recipe meant for Q-MLP models meets an unconverted one."""
    if not recipe.expects_qmlp or is_qmlp:
        return
    four_bit = recipe.activations.bits == 4 or any(  # 4-bit activations: where an unconverted model suffers
        r.spec.get("bits") == 4 and "weights" not in r.match and r.quantizer_kind != "weights" for r in recipe.rules)
    log(f"note: recipe {recipe.name} is meant for Q-MLP models (LayerNorm, bounded activation, token groups); "
        f"this {family} model has not been converted (see `qmlp convert`)"
        + ("; with 4-bit activations an unconverted model loses most with it (4.9-5.2 pt measured): use "
           "--recipe auto:w4a8 for an OpenVINO CPU (4-bit activations run on its int8 kernels) or auto:w4a4 "
           "(both searched for this model), or `qmlp convert` + `qmlp finetune` first"
           if four_bit else ""))


def _quantize_openvino(model, dataset, recipe, ignored_scope, extra_rules, subset_size, log) -> QuantizationResult:
    """:func:`quantize` for an ``openvino.Model``: NNCF's OpenVINO backend and the post-pass over it."""
    from . import ov_backend
    from .postpass.openvino_backend import OpenVINOBackend

    if isinstance(recipe, AutoTarget):
        raise SpecError(f"recipe {recipe.name}: the auto search runs on the torch model (it switches torch quantizers "
                        f"per site); {ov_backend.TORCH_ONLY}, then reuse its recipe.json with the IR")
    ov_backend.check_recipe(recipe)
    ov_backend.image_input(model)
    if any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()):
        raise ValueError("the IR already holds FakeQuantize nodes (it is quantized); give the float IR")
    t0 = time.time()
    size = items_wanted(recipe, subset_size)
    items = calibration_items(dataset, size)
    if len(items) < size:
        log(short_data_note(recipe.name, len(items), size))
    ov_backend.check_items(model, items)
    recipe = recipe.with_rules(tuple(extra_rules))
    roles = ov_backend.graph_roles(model)
    family = ov_backend.family_of_graph(roles)
    check_ignored_scope(ignored_scope, roles)
    backend = OpenVINOBackend(roles)
    if recipe.weight_compression is not None:
        quantized, report = compress_weights(backend, model, recipe, items), []
    else:
        quantized, decisions, _ = post_training(backend, model, items, recipe, family, ignored_scope, log)
        report = [d.to_dict() for d in decisions]
    result = QuantizationResult(quantized, report, recipe, None, time.time() - t0, family, len(items))
    log(f"{recipe.name}: quantized the OpenVINO {family} model in {result.seconds:.1f} s "
        f"({result.quantizers} quantizers)")
    return result


__all__ = ["quantize", "QuantizationResult", "calibration_items", "Decision"]
