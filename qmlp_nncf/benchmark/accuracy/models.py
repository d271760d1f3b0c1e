"""What the accuracy benchmark runs on: the models (zoo entries or any checkpoint), the recipes, the plan."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


class AccuracyError(ValueError):
    """Bad input (model, recipe, reference file, option); the message says what to change."""


def is_baseline(recipe: str) -> bool:
    """Stock NNCF and plain-placement recipes: comparison points, not the project's targets."""
    return recipe.startswith(("nncf_", "plain_"))


@dataclass(frozen=True)
class BenchModel:
    """A trained model to benchmark: a zoo entry, or any checkpoint of a zoo architecture."""

    name: str
    family: str
    checkpoint: Path
    reference_top1: Optional[float] = None  # float top-1 on the full test set, from the zoo
    base: Optional[str] = None  # Q-MLP models: the base model they were converted from
    source: Optional[object] = None  # a sources.ModelSource (checkpoint/timm weights) instead of the zoo file

    @property
    def is_qmlp(self) -> bool:
        return self.base is not None

    @classmethod
    def from_source(cls, source) -> "BenchModel":
        """Any model source (``--checkpoint``, ``--pretrained-file``, timm name with ``--model-kwargs``)."""
        from ...models.surgery import family_of_module

        loaded = source.load(float_for="the accuracy benchmark")
        family, is_qmlp = family_of_module(loaded.model)
        base = loaded.meta.get("base") or (loaded.arch if is_qmlp else None)
        return cls(loaded.arch, family, Path(source.checkpoint or "."), loaded.meta.get("top1"), base, source)

    @classmethod
    def from_zoo(cls, entry) -> "BenchModel":
        return cls(entry.name, entry.family, entry.checkpoint, entry.top1, entry.base)

    def teacher(self) -> dict | str:
        """The float checkpoint QAT distils from."""
        return self.source.to_json() if self.source is not None else str(self.checkpoint)


def zoo_models(names: list[str], log: Log = stderr_log) -> list[BenchModel]:
    """The zoo models called ``names`` (all when empty; those without a checkpoint are skipped with a
    message); an unknown name, or a named model without its checkpoint, fails."""
    from ...zoo import list_entries

    entries = {e.name: e for e in list_entries()}
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise AccuracyError(f"unknown zoo model(s) {unknown}; the zoo has: {', '.join(entries) or 'none yet'}")
    chosen = [entries[n] for n in names] if names else list(entries.values())
    missing = [e.name for e in chosen if not e.checkpoint.is_file()]
    if missing and names:
        raise AccuracyError(f"zoo checkpoint(s) of {missing} are absent ({chosen[0].checkpoint.parent}); "
                            f"train them first (`qmlp train ... --zoo`)")
    if not chosen or len(missing) == len(chosen):
        raise AccuracyError("no zoo checkpoint to benchmark yet; train the zoo models first (`qmlp train ... --zoo`)")
    for name in missing:
        log(f"note: skipping zoo model {name}: its checkpoint is not there yet")
    return [BenchModel.from_zoo(e) for e in chosen if e.checkpoint.is_file()]


def check_recipes(names: list[str]) -> list[str]:
    """``names`` (all recipes when empty); an unknown name fails with the valid ones. A path to a recipe
    ``.json`` file is a recipe too (its rows are named by the path)."""
    from pathlib import Path

    from ...quantization import list_recipes
    from ...quantization.recipes.recipe import AUTO_TARGETS

    files = list_recipes()
    known = files + [f"auto:{t}" for t in AUTO_TARGETS]  # auto: recipes run only when named (a search per model)
    unknown = [n for n in names if n not in known and not (n.endswith(".json") and Path(n).is_file())]
    if unknown:
        raise AccuracyError(f"unknown recipe(s) {unknown}; choose from {', '.join(known)} "
                            f"(or give the path of a recipe .json file)")
    return list(dict.fromkeys(names)) if names else files


class _Auto:  # an auto: recipe is searched per model: it fits every model
    expects_qmlp = False
    weight_compression = None
    calibration_size = 300


AUTO_PLACEHOLDER = _Auto()


def load_bench_recipe(name: str):
    """The recipe object of ``name`` (the placeholder for ``auto:`` recipes, searched per model)."""
    from ...quantization import AutoTarget, load_recipe

    return AUTO_PLACEHOLDER if AutoTarget.is_auto(name) else load_recipe(name)


def mismatched(model: BenchModel, recipe) -> bool:
    """A Q-MLP recipe on a model that has not been through Q-MLP surgery."""
    return recipe.expects_qmlp and not model.is_qmlp


def plan(models: list[BenchModel], recipes: list[str], matching_only: bool) -> list[tuple[BenchModel, str, bool]]:
    """(model, recipe, mismatched) for every run."""
    loaded = {r: load_bench_recipe(r) for r in recipes}
    runs = [(m, r, mismatched(m, loaded[r])) for m in models for r in recipes]
    return [run for run in runs if not (matching_only and run[2])]


def test_set(limit: int, data_dir: Optional[str] = None, model: Optional[torch.nn.Module] = None,
             data=None) -> Dataset:
    """The first ``limit`` val images of ``data`` (default Fashion-MNIST test) for ``model``."""
    from ...sources import DataSource, subset

    data = data or DataSource(data_dir=data_dir)
    if model is None:
        from ...data import FashionMNIST

        return subset(FashionMNIST("test", data.data_dir), limit)
    return subset(data.dataset("val", model), limit)


def load_float(model: BenchModel) -> tuple[torch.nn.Module, str]:
    """The float model and its timm architecture name."""
    from ...sources import ModelSource

    loaded = (model.source or ModelSource(checkpoint=str(model.checkpoint))).load()
    return loaded.model.eval(), loaded.arch
