"""What every quantization algorithm shares: the calibration items of a dataset (``nncf.Dataset``, DataLoader or
iterable), the notes it logs, and the :class:`QuantizationResult` it returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import nncf
import numpy as np
import torch

from ..recipes.recipe import AUTO_HOLDOUT, Recipe


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
    auto: Optional[object] = None  # the search (``algorithms.auto.AutoResult``), for recipe="auto:..."
    corrections: dict = field(default_factory=dict)  # reparameterization / error_correction summaries

    @classmethod
    def of(cls, quantized, decisions: Optional[list], recipe: Recipe, summaries: dict, seconds: float, family: str,
           items: int, search=None, log=None, model_name: str = "{family} model") -> "QuantizationResult":
        """An algorithm's result from what it made (``decisions`` None: weight-only, no report), with its log line."""
        if isinstance(quantized, torch.nn.Module):
            quantized = quantized.eval()
        report = [d.to_dict() for d in decisions] if decisions is not None else []
        result = cls(quantized, report, recipe, summaries.get("range_tuning"), seconds, family, items, search,
                     {k: v for k, v in summaries.items() if k != "range_tuning"})
        if log is not None:
            log(f"{recipe.name}: quantized {model_name.format(family=family)} in {seconds:.1f} s "
                f"({result.quantizers} quantizers)")
        return result

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


def note_unconverted(recipe: Recipe, family: str, is_qmlp: bool, log) -> None:
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


__all__ = ["QuantizationResult", "calibration_items", "short_data_note", "note_unconverted"]
