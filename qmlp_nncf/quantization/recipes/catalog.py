"""Which recipe is for which model: the written recipes grouped by their ``expects_qmlp`` field, and the ``auto:``
searches, which fit any model."""
from __future__ import annotations

from dataclasses import dataclass

QMLP_MODELS = "Q-MLP (converted) models"
ANY_MODEL = "any model"
ADVICE = ("an unconverted model (e.g. a pretrained timm model) deployed on an OpenVINO CPU: auto:w4a8 (4-bit "
          "weights, 8-bit inputs, searched for that model and finished with weight error correction), or plain_w4a8_ec "
          "when a search is too slow: a CPU runs 4-bit activations on its int8 kernels, so W4A4 has W4A8's size and "
          "speed and is less accurate; auto:w4a4 / plain_w4a4_ec where int4 activations are computed. All of them use "
          "the fused placement (as fast as stock int8). The qmlp_* recipes are made for converted models (`qmlp "
          "convert` + `qmlp finetune` first)")


@dataclass(frozen=True)
class RecipeEntry:
    name: str
    description: str
    for_models: str  # QMLP_MODELS or ANY_MODEL


def recipe_catalog() -> list[RecipeEntry]:
    """Every recipe by name (``recipes/*.json``), then the ``auto:`` targets."""
    from .recipe import AUTO_TARGETS, list_recipes, load_recipe

    entries = []
    for name in list_recipes():
        recipe = load_recipe(name)
        entries.append(RecipeEntry(name, recipe.description, QMLP_MODELS if recipe.expects_qmlp else ANY_MODEL))
    return entries + [RecipeEntry(f"auto:{t}", f"searched for the model on its calibration data: every Linear inside "
                                              f"the blocks {t[:2]} weights, {t[2:]} inputs, the fused placement "
                                              f"(quantization.algorithms.auto)",
                                  ANY_MODEL) for t in AUTO_TARGETS]


def catalog_text(entries: list[RecipeEntry]) -> str:
    """The recipes grouped by the models they are for, and the advice for unconverted models."""
    lines = []
    for group in (QMLP_MODELS, ANY_MODEL):
        lines += [f"For {group}:"] + [f"  {e.name}: {e.description}" for e in entries if e.for_models == group] + [""]
    return "\n".join(lines + [f"Recommended for {ADVICE}."])
