"""The entry point: :func:`quantize`, in ``nncf.quantize``'s calling convention. It resolves the recipe once
(``recipes.recipe.resolve_recipe``) and hands it to its algorithm: ``algorithms.postpass.PostTrainingQuantization``
(``nncf.quantize`` + the rule post-pass, or ``nncf.compress_weights``), or ``algorithms.auto.AutoQuantization`` for
``auto:`` recipes; each chooses its backend from the model."""
from __future__ import annotations

import warnings
from typing import Optional

import nncf
import torch

from ..progress import log_line
from .algorithms.common import QuantizationResult, calibration_items
from .algorithms.postpass.algorithm import PostTrainingQuantization
from .algorithms.postpass.parameters import Decision
from .recipes.recipe import AutoTarget, Recipe, resolve_recipe


def quantize(model: torch.nn.Module, calibration_dataset, recipe: str | Recipe | AutoTarget = "qmlp_w8a8", *,
             subset_size: Optional[int] = None, ignored_scope: Optional[nncf.IgnoredScope] = None,
             target_device=None, model_type=None, fast_bias_correction: Optional[bool] = None,
             config: Optional[str | dict] = None, extra_rules: tuple = (), auto_max_minutes: float = 15.0,
             log=log_line, calibration_size: Optional[int] = None) -> QuantizationResult:
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
    calibration items (``quantization.algorithms.auto``), then calibrates its finishes; both within ``auto_max_minutes``
    (the search gets half; finishes that would overrun are left out, named in ``result.auto.finish["skipped"]``).
    ``result.auto`` then holds the search and ``result.auto.recipe_json`` the recipe, to save and reuse with
    ``--recipe FILE``.

    ``model`` may also be an ``openvino.Model`` (a float IR with one N x C x H x W input): the same recipes, rules
    and configs then run on NNCF's OpenVINO backend (``openvino_model``, ``algorithms.postpass.openvino_backend``), scopes use the IR's node names, and
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
        from .recipes.config import load_config

        cfg = load_config(config)
        recipe, ignored_scope = cfg.recipe, cfg.ignored_scope
    recipe = resolve_recipe(recipe, target_device=target_device, model_type=model_type,
                            fast_bias_correction=fast_bias_correction, auto_max_minutes=auto_max_minutes)
    if isinstance(recipe, AutoTarget):  # the auto: search, its own algorithm
        from .algorithms.auto import AutoQuantization as Algorithm
    else:
        Algorithm = PostTrainingQuantization
    return Algorithm(recipe, ignored_scope, tuple(extra_rules), log).apply(model, calibration_dataset, subset_size)


__all__ = ["quantize", "QuantizationResult", "calibration_items", "Decision"]
