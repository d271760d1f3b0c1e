"""OpenVINO models for the recipes: reading an IR, its one image input, the checks of what stays torch-only, the
family and graph roles of an IR, and a census of its FakeQuantize nodes. The post-pass over the FakeQuantize nodes
that ``nncf.quantize(ov_model)`` places is ``postpass.openvino_backend``.

Range tuning, QAT and ``auto:`` recipes need torch autograd or the torch probe: on an OpenVINO model they are one
clear error (:func:`check_recipe`).
"""
from __future__ import annotations

import torch

from ..ir_file import IRError
from .recipes import Recipe
from .roles import GraphRoles
from .specs import SpecError

TORCH_ONLY = "use the torch path (quantize the torch model, then `qmlp export`)"


def image_input(ov_model) -> tuple[int, int, int]:
    """``(C, H, W)`` of the IR's one image input; an IR with another input is one clear error."""
    if len(ov_model.inputs) != 1:
        names = [i.get_any_name() for i in ov_model.inputs]
        raise IRError(f"the IR has {len(ov_model.inputs)} inputs ({', '.join(names)}); an image classifier takes "
                      f"one N x C x H x W image input")
    shape = ov_model.inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        raise IRError(f"the IR's input has shape {shape}; expected N x C x H x W images")
    dims = [d.get_length() if d.is_static else None for d in list(shape)[1:]]
    if None in dims:
        raise IRError(f"the IR's input {shape} has a dynamic C, H or W; re-export it with a static image size "
                      f"(ov.convert_model(..., input=[1, 3, 224, 224]))")
    return tuple(dims)


def check_recipe(recipe: Recipe) -> None:
    if recipe.range_tuning is not None:
        raise SpecError(f"recipe {recipe.name}: range tuning trains the quantizer ranges with torch autograd and "
                        f"works on torch models only; {TORCH_ONLY}, or choose a recipe without range_tuning")
    for key in ("reparameterize", "error_correction"):
        if getattr(recipe, key) is not None:
            raise SpecError(f"recipe {recipe.name}: {key} rewrites the torch model's parameters and works on torch "
                            f"models only; {TORCH_ONLY}, or drop '{key}'")


def family_of_graph(roles: GraphRoles) -> str:
    """``mixer`` / ``resmlp`` / ``gmlp`` from the graph: a gating product makes gMLP, an Affine (or no norm at all)
    ResMLP; else MLP-Mixer. Q-MLP's ResMLP uses LayerNorm, the rules of both families apply to it alike."""
    kinds = roles.kinds
    if any(roles.is_gating_product(n) for n in roles.graph.get_all_nodes()):
        return "gmlp"
    if "affine" in kinds.values():
        return "resmlp"
    names = " ".join(kinds)
    return "resmlp" if "linear_tokens" in names else "mixer"


def fake_quantizes(model) -> list:
    """The FakeQuantize nodes of an ``openvino.Model``, in topological order."""
    return [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]


def graph_roles(model) -> GraphRoles:
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter

    return GraphRoles(GraphConverter.create_nncf_graph(model))


def check_items(model, items: list[torch.Tensor]) -> None:
    want = image_input(model)
    got = tuple(items[0].shape[1:])
    if got != want:
        raise IRError(f"the calibration images are {'x'.join(map(str, got))} but the IR takes "
                      f"{'x'.join(map(str, want))}; preprocess for the IR's input (--input-size, "
                      f"--convert-channels) or give an IR of that size")


def fq_census(model) -> list[dict]:
    """One row per FakeQuantize of an ``ov.Model`` (what the IR really holds): name, levels, low/high shape."""
    rows = []
    for fq in fake_quantizes(model):
        low = fq.input_value(1).get_node()
        rows.append({"name": fq.get_friendly_name(), "levels": fq.get_attributes()["levels"],
                     "low_shape": list(fq.input_value(1).get_shape()),
                     "input": fq.input_value(0).get_node().get_type_name(),
                     "low": low.get_data().reshape(-1).tolist() if low.get_type_name() == "Constant" else None})
    return rows


__all__ = ["image_input", "fake_quantizes", "graph_roles",
           "family_of_graph", "check_recipe", "check_items", "fq_census"]
