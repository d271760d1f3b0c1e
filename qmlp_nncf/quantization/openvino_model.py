"""OpenVINO models for the recipes: its one image input, the checks of what stays torch-only, the
family and graph roles of an IR, a census of its FakeQuantize nodes, and its 4-bit weights (counted, static vs
weight-only, and run on int8 kernels: used by the export and by the OpenVINO-backend post-pass). The post-pass over the FakeQuantize nodes
that ``nncf.quantize(ov_model)`` places is ``postpass.openvino_backend``.

Range tuning, QAT and ``auto:`` recipes need torch autograd or the torch probe: on an OpenVINO model they are one
clear error (:func:`check_recipe`). Error correction and reparameterization run on the IR's constants
(``algorithms.error_correction.openvino_backend``, ``algorithms.reparam.openvino_backend``), with the helpers at the
end of this module.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..ir_file import IRError
from .recipes.recipe import Recipe
from .rules.roles import GraphRoles
from .rules.specs import SpecError

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


# ---------------------------------------------------------------- 4-bit weights in an IR (export and post-pass)
def four_bit_constants(ov_model) -> int:
    """How many ``i4``/``u4`` constants the IR holds (4-bit weights)."""
    import openvino as ov

    return sum(op.get_type_name() == "Constant" and op.get_element_type() in (ov.Type.i4, ov.Type.u4)
               for op in ov_model.get_ordered_ops())


def is_statically_quantized(ov_model) -> bool:
    """Whether the IR quantizes activations (holds FakeQuantize nodes), not only weights."""
    return any(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ordered_ops())


def int4_on_int8_kernels(ov_model) -> int:
    """Let 4-bit GEMM weights run on int8 kernels, and keep them 4-bit on disk.

    A 4-bit weight FakeQuantize becomes an ``i4``/``u4`` constant with a Convert -> (Subtract) -> Multiply chain.
    OpenVINO 2026.4's CPU plugin runs a GEMM whose weights are 4-bit through its weight-decompression kernels
    (runtime precision ``i4``). On VNNI CPUs these quantize the activations again, dynamically, and run slower
    than int8 GEMMs; on an AVX2-only CPU some static activation FakeQuantizes in front of them are dropped and
    the GEMM computes in f32 (measured: -1.5 pt). Either way it is not what the quantized model computes.
    A Convert to ``i8``/``u8`` right after the 4-bit constant is folded when the model compiles, so the plugin's
    low-precision pipeline sees its usual int8-weight pattern (runtime precision ``u8``/``i8``) while the .bin
    still holds 4-bit values. Only for statically quantized models (weights and activations): weight-only
    INT4 models have no activation quantizers, and there the decompression kernels are the right ones.
    Returns the number of constants changed."""
    import openvino as ov
    from openvino import opset13

    wider = {ov.Type.i4: ov.Type.i8, ov.Type.u4: ov.Type.u8}
    changed = 0
    for node in ov_model.get_ordered_ops():
        if node.get_type_name() != "Constant" or node.get_element_type() not in wider:
            continue
        targets = [t for t in node.output(0).get_target_inputs() if t.get_node().get_type_name() == "Convert"
                   and t.get_node().get_output_element_type(0) not in wider.values()]  # idempotent
        if not targets:
            continue
        widened = opset13.convert(node.output(0), wider[node.get_element_type()])
        widened.set_friendly_name(node.get_friendly_name() + "/to_int8")
        for t in targets:
            t.replace_source_output(widened.output(0))
        changed += 1
    if changed:
        ov_model.validate_nodes_and_infer_types()
    return changed


# ---------------------------------------------------------------- reading and rewriting an IR's constants (the 4-bit aids)
def f32_constant(value: np.ndarray):
    from openvino import opset13 as ops

    return ops.constant(np.ascontiguousarray(value, dtype=np.float32))


def constant_value(output) -> Optional[np.ndarray]:
    """The value behind ``output`` when it is a Constant (through Converts, e.g. of an f16 constant), else None."""
    node = output.get_node()
    while node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    return node.get_data().astype(np.float32) if node.get_type_name() == "Constant" else None


def bias_add(matmul):
    """The Add that adds a constant bias to the MatMul's output (its only reader), or None."""
    readers = list(matmul.output(0).get_target_inputs())
    if len(readers) != 1 or readers[0].get_node().get_type_name() != "Add":
        return None
    add = readers[0].get_node()
    other = add.input_value(1 - readers[0].get_index())
    return add if constant_value(other) is not None else None


def ops_by_name(model) -> dict:
    return {op.get_friendly_name(): op for op in model.get_ordered_ops()}


class TensorReader:
    """An IR compiled for batches of calibration items (true f32), returning the tensors ``reads`` names: ``(op,
    "in")`` its input 0, ``(op, "out")`` its output 0. Only the part of the graph that computes them is compiled
    (a MatMul early in the model costs a fraction of a forward pass); ``bypass``: FakeQuantizes left out."""

    def __init__(self, model, reads: list[tuple[str, str]], bypass: tuple = ()):
        import openvino as ov

        probe = model.clone()
        ops = ops_by_name(probe)
        for name in bypass:  # FakeQuantizes kept in float while the weights are solved
            if name in ops:
                ops[name].output(0).replace(ops[name].input_value(0))
        wanted = [ops[op].input_value(0) if port == "in" else ops[op].output(0) for op, port in reads]
        probe, base = ov.Model(wanted, probe.get_parameters(), "reads"), 0
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        static = list(probe.inputs[0].get_partial_shape())
        self.batched = True
        try:  # batches of items; an IR with a hard-coded batch runs one item at a time
            batched = probe.clone()
            batched.reshape({batched.inputs[0]: [-1, *static[1:]]})
            self.request = ov.Core().compile_model(batched, "CPU", config).create_infer_request()
        except RuntimeError:
            self.request, self.batched = ov.Core().compile_model(probe, "CPU", config).create_infer_request(), False
        self.base, self.count = base, len(reads)

    def _one(self, x: np.ndarray) -> list[torch.Tensor]:
        self.request.infer({0: x})
        return [torch.from_numpy(self.request.get_output_tensor(self.base + k).data.copy()) for k in range(self.count)]

    def __call__(self, chunk: list[np.ndarray]) -> list[torch.Tensor]:
        if self.batched:
            return self._one(np.concatenate(chunk))
        per_item = [self._one(x) for x in chunk]
        return [torch.cat([o[k] for o in per_item]) for k in range(self.count)]


__all__ = ["image_input", "fake_quantizes", "graph_roles", "family_of_graph", "check_recipe", "check_items", "fq_census",
           "four_bit_constants", "is_statically_quantized", "int4_on_int8_kernels",
           "f32_constant", "constant_value", "bias_add", "ops_by_name", "TensorReader"]
