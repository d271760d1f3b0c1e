"""Post-training quantization with a recipe: ``nncf.quantize`` (global settings) + the rule post-pass,
or ``nncf.compress_weights`` for weight-only recipes."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional

import nncf
import torch

from ..checkpoint import is_quantized
from ..models.surgery import family_of_module
from .ov_backend import is_openvino_model
from .postpass.algorithm import compress_weights, post_training
from .postpass.parameters import Decision
from .postpass.torch_backend import TorchBackend
from .recipes import Recipe, check_target_device, load_recipe
from .roles import GraphRoles
from .scopes import check_ignored_scope
from .specs import SpecError

if TYPE_CHECKING:
    from .auto import AutoResult


def items_wanted(recipe, calibration_size: Optional[int] = None) -> int:
    """How many calibration items :func:`quantize` reads for ``recipe`` (a name, ``"auto:..."`` or a
    ``Recipe``): the calibration size, plus ``AUTO_HOLDOUT`` for an ``auto:`` recipe."""
    if isinstance(recipe, str) and recipe.startswith("auto:"):
        return (calibration_size or AUTO_CALIBRATION) + AUTO_HOLDOUT
    return calibration_size or getattr(recipe, "calibration_size", AUTO_CALIBRATION)


def calibration_items(dataset: Iterable, size: int) -> list[torch.Tensor]:
    """The first ``size`` inputs of ``dataset`` as batch-1 tensors. Items may be ``(x, label)`` or ``x``."""
    items = []
    for item in dataset:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"calibration items must be tensors or (tensor, label) pairs, got {type(x).__name__}")
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


def bound_heap_growth() -> None:
    """Stop glibc from raising its mmap threshold (default 128 KiB, raised dynamically after large frees).

    Otherwise activation buffers land on the heap, NNCF's small per-item mean statistics (MEAN_MINMAX
    ranges, fast bias correction) sit between them, the freed buffers cannot be reused, and peak RSS grows
    by about one forward pass per calibration item (~60 MB per item on mixer_b16_224: 300 items need
    ~20 GB). With a fixed threshold big buffers go to mmap and are returned at once; the quantized model
    is bit-identical. Process-wide and permanent; a no-op where libc has no ``mallopt`` (non-glibc)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


AUTO_CALIBRATION = 300  # calibration items of recipe="auto:..." (ranges and the search objective)
AUTO_HOLDOUT = 256  # further items of recipe="auto:...", unseen by the search, on which its finish is chosen


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


def quantize(model: torch.nn.Module, dataset: Iterable, recipe: str | Recipe = "qmlp_w8a8",
             *, config: Optional[str | dict] = None, extra_rules: tuple = (),
             ignored_scope: Optional[nncf.IgnoredScope] = None,
             calibration_size: Optional[int] = None, auto_max_minutes: float = 15.0,
             target_device=None, log=lambda msg: print(msg, file=sys.stderr)) -> QuantizationResult:
    """Quantize ``model`` with a recipe; returns a :class:`QuantizationResult` whose ``model`` is a new
    NNCF model (``model`` is left untouched).

    ``dataset`` yields calibration inputs (``x`` or ``(x, label)``; take them from the *train* split).
    ``config`` (an NNCF-style JSON path or dict, see docs/config.md) replaces ``recipe`` and
    ``ignored_scope`` with what it describes.
    An ``ignored_scope`` name or pattern that matches no op raises ``SpecError``.
    ``target_device`` (an ``nncf.TargetDevice`` or its name) goes to ``nncf.quantize`` as it is, except ``CPU_SPR``
    on a torch model, which NNCF's torch backend refuses: the torch model is quantized for CPU, and the fused
    placement's int8 residual stream stands for NNCF's SPR pass (an ``openvino.Model`` takes CPU_SPR as it is).
    ``recipe="auto:w4a4"`` (``auto:w4a8``, ``auto:w8a8``) first searches the specs for this model on the
    calibration items (``quantization.auto``), then calibrates its finishes; both within ``auto_max_minutes``
    (the search gets half; finishes that would overrun are left out, named in ``result.auto.finish["skipped"]``).
    ``result.auto`` then holds the search and ``result.recipe_json`` the recipe, to save and reuse with
    ``--recipe FILE``.

    ``model`` may also be an ``openvino.Model`` (a float IR with one N x C x H x W input): the same recipes, rules
    and configs then run on NNCF's OpenVINO backend (``ov_backend``), scopes use the IR's node names, and
    ``result.model`` is the quantized ``openvino.Model``. Range tuning and ``auto:`` recipes are torch-only.
    """
    if config is not None:
        from .config import load_config

        cfg = load_config(config)
        recipe, ignored_scope = cfg.recipe, cfg.ignored_scope
    target_device = check_target_device(target_device, "target_device")
    auto = isinstance(recipe, str) and recipe.startswith("auto:")
    if auto:
        from .auto import parse_target

        parse_target(recipe)  # a bad target fails before any work
        if not auto_max_minutes > 0:
            raise ValueError(f"auto_max_minutes (qmlp quantize --max-minutes) must be > 0, got {auto_max_minutes}")
    else:
        recipe = (load_recipe(recipe) if isinstance(recipe, str) else recipe).for_target(target_device)
    if is_openvino_model(model):
        return _quantize_openvino(model, dataset, recipe, ignored_scope, extra_rules, calibration_size, log)
    if is_quantized(model):
        raise ValueError("the model already holds NNCF quantizers; quantize its float model (load the float "
                         "checkpoint, or keep the model you passed to quantize() before)")
    model = model.eval()
    bound_heap_growth()
    t0 = time.time()
    size = calibration_size or (AUTO_CALIBRATION if auto else recipe.calibration_size)
    items = calibration_items(dataset, size + (AUTO_HOLDOUT if auto else 0))
    if len(items) < size + (AUTO_HOLDOUT if auto else 0):
        log(short_data_note(recipe if auto else recipe.name, len(items), size, auto))
    items, holdout = items[:size], items[size:]
    search = None
    if auto:
        from .auto import SEARCH_SHARE, auto_recipe

        log(f"{recipe}: searching the quantizer specs on {len(items)} calibration items "
            f"(at most {auto_max_minutes:g} min, the search {SEARCH_SHARE * auto_max_minutes:g} of them)")
        search = auto_recipe(model, items, recipe, max_minutes=SEARCH_SHARE * auto_max_minutes, log=log)
        recipe = search.recipe.for_target(target_device)
    recipe = recipe.with_rules(tuple(extra_rules))
    family, is_qmlp = family_of_module(model)
    if recipe.expects_qmlp and not is_qmlp:
        four_bit = recipe.activations.bits == 4 or any(  # 4-bit activations: where an unconverted model suffers
            r.spec.get("bits") == 4 and "weights" not in r.match and r.quantizer_kind != "weights" for r in recipe.rules)
        log(f"note: recipe {recipe.name} is meant for Q-MLP models (LayerNorm, bounded activation, token groups); "
            f"this {family} model has not been converted (see `qmlp convert`)"
            + ("; with 4-bit activations an unconverted model loses most with it (4.9-5.2 pt measured): use "
               "--recipe auto:w4a8 for an OpenVINO CPU (4-bit activations run on its int8 kernels) or auto:w4a4 "
               "(both searched for this model), or `qmlp convert` + `qmlp finetune` first"
               if four_bit else ""))

    summaries: dict = {}
    if recipe.weight_compression is not None:
        quantized = compress_weights(TorchBackend(), model, recipe, items)
        report: list[dict] = []
    else:
        roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
        check_ignored_scope(ignored_scope, roles)
        t1 = time.time()
        quantized, decisions, summaries = post_training(TorchBackend(roles), model, items, recipe, family,
                                                        ignored_scope, log)
        if search is not None:
            from .auto import finish

            search, kept = finish(model, items, search, recipe, (quantized, decisions, summaries), roles, family,
                                  ignored_scope, holdout, log, deadline=t0 + 60 * auto_max_minutes,
                                  seconds=time.time() - t1)
            quantized, decisions, recipe, summaries = kept.quantized, kept.decisions, kept.recipe, kept.summaries
        report = [d.to_dict() for d in decisions]
    corrections = {k: v for k, v in summaries.items() if k != "range_tuning"}
    result = QuantizationResult(quantized.eval(), report, recipe, summaries.get("range_tuning"), time.time() - t0,
                                family, len(items), search, corrections)
    log(f"{recipe.name}: quantized {family} model in {result.seconds:.1f} s ({result.quantizers} quantizers)")
    return result


def _quantize_openvino(model, dataset, recipe, ignored_scope, extra_rules, calibration_size, log) -> QuantizationResult:
    """:func:`quantize` for an ``openvino.Model``: NNCF's OpenVINO backend and the post-pass over it."""
    from . import ov_backend
    from .postpass.openvino_backend import OpenVINOBackend

    if isinstance(recipe, str):  # "auto:..." (a Recipe object is already resolved)
        raise SpecError(f"recipe {recipe}: the auto search runs on the torch model (it switches torch quantizers "
                        f"per site); {ov_backend.TORCH_ONLY}, then reuse its recipe.json with the IR")
    ov_backend.check_recipe(recipe)
    ov_backend.image_input(model)
    if any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()):
        raise ValueError("the IR already holds FakeQuantize nodes (it is quantized); give the float IR")
    bound_heap_growth()
    t0 = time.time()
    size = calibration_size or recipe.calibration_size
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
