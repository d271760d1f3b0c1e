"""Built-in rule sets of the three MLP families, chosen from the model's structure.

Shared by all families (the paper's remedies 3 and 5, and our measurements): the residual stream
stays 8-bit symmetric (4-bit residual adds alone cost 12-40 pt) with a 99.99th-percentile range (where the fused
placement quantizes it: +0.04 to +0.09 pt over min-max on qmlp_resmlp_fmnist W8A8, two seeds); the patch embedding
and the classifier stay 8-bit; tensors with a one-sided long tail (norm outputs, activation outputs, gMLP's gating
product) get affine (asymmetric) quantizers with percentile ranges; the token groups' outputs, which the fused
placement quantizes with one range per Concat, take min-max (the groups' ranges differ; a mean range clips the
widest group).
"""
from __future__ import annotations

from .rule import rules_from_list

_EIGHT_BIT_MINMAX = {"bits": 8, "symmetric": True, "range": {"estimator": "min_max"}}
_RESIDUAL = {"bits": 8, "symmetric": True, "range": {"estimator": "percentile", "percentile": 99.99}}
_AFFINE = {"symmetric": False}  # the range estimator (percentile and its value) comes from the recipe

# the tensors the fused placement adds quantizers to: the family rules give them these specs, and recipes without family
# rules (whose default activation spec may be 4-bit) get them from PLACED; a recipe's own rules still override them
_STREAMS = [
    {"match": ["residual_add"], "spec": _RESIDUAL},
    {"match": ["token_mixing_output"], "spec": {"bits": 8, "range": {"estimator": "min_max"}}},
]
# with the family rules off (the plain_* recipes, auto:), also gMLP's GELU output where the gate splits it (u is
# the product's input, v the gate norm's), whatever the recipe's default activation spec; symmetric, because
# OpenVINO folds a symmetric dequantization into the MVN after it and keeps an affine one as an f32 Subgraph
PLACED = _STREAMS + [{"match": ["spatial_gating_input"], "spec": {
    "bits": 8, "symmetric": True, "range": {"estimator": "percentile", "percentile": 99.99}}}]

COMMON = _STREAMS + [
    {"match": ["norm_output"], "spec": _AFFINE},
    {"match": ["activation_output"], "spec": _AFFINE},
    {"match": ["patch_embedding_input"], "spec": _EIGHT_BIT_MINMAX},
    {"match": ["classifier_input"], "spec": {"bits": 8}},
    {"match": ["weights", "patch_embedding"], "spec": {"bits": 8}},
    {"match": ["weights", "classifier"], "spec": {"bits": 8}},
]

FAMILY_RULES = {
    "mixer": COMMON,
    # Affine outputs (base ResMLP, before Q-MLP's LayerNorm) carry single channels at ~10x the median:
    # a percentile clips them and costs 1-10 pt, so their range stays min-max
    "resmlp": COMMON + [{"match": ["affine_output"], "spec": {"range": {"estimator": "min_max"}}}],
    "gmlp": COMMON + [
        {"match": ["spatial_gating_product"], "spec": _AFFINE},
        {"match": ["spatial_gating_input"], "spec": _AFFINE},
    ],
}


def placed_rules():
    """The specs of the tensors the fused placement quantizes (``PLACED``)."""
    return rules_from_list(PLACED, "built-in placement rules")


def family_rules(family: str):
    if family not in FAMILY_RULES:
        raise ValueError(f"no built-in rules for family {family!r}; known: {sorted(FAMILY_RULES)}")
    return rules_from_list(FAMILY_RULES[family], f"built-in {family} rules")
