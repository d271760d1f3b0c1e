"""Reparameterization of a float ``openvino.Model`` (the package doc says what it does), on the IR's constants.

A norm's output in an IR is ``Add(Multiply(x, gamma), beta)`` with constant ``gamma`` and ``beta`` (a LayerNorm: an
MVN before them; ResMLP's Affine: nothing). Where that output is read only by MatMuls with constant weights that
read its channel axis directly (no ``transpose_a``), its per-channel range is measured by OpenVINO inference (true
f32) and the scales are folded into the constants: ``gamma / r``, ``(beta - m) / r``, the MatMul weights' input
columns times ``r`` and their bias plus ``W @ m`` (a bias Add is added after a MatMul without one)."""
from __future__ import annotations

import numpy as np
import torch

from ...openvino_model import TensorReader, bias_add, constant_value, f32_constant, ops_by_name
from ...recipes.knobs import Reparameterization
from ...rules.calibration import batches
from .common import Fold, ReparamReport, channel_scales, spread

BATCH = 16


def _affine_constants(add):
    """``(Multiply, gamma port, beta port)`` when ``add`` is ``Add(Multiply(x, gamma), beta)`` with constants, else
    None."""
    if add.get_type_name() != "Add":
        return None
    for beta_port in range(2):
        mul = add.input_value(1 - beta_port).get_node()
        if constant_value(add.input_value(beta_port)) is None or mul.get_type_name() != "Multiply":
            continue
        for gamma_port in range(2):
            if constant_value(mul.input_value(gamma_port)) is not None and \
                    constant_value(mul.input_value(1 - gamma_port)) is None:
                return mul, gamma_port, beta_port
    return None


def foldable_norms(model) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """``{norm output (the Add's name): (MatMuls it feeds)}`` for the norms that fold, and the others with why."""
    folds, skipped = {}, {}
    for op in model.get_ordered_ops():
        found = _affine_constants(op)
        if found is None:
            continue
        channels = constant_value(found[0].input_value(found[1])).size
        readers = [r.get_node() for r in op.output(0).get_target_inputs()]
        name = op.get_friendly_name()
        if channels < 2:
            continue  # a scalar scale (a layer scale, not a norm)
        if not all(r.get_type_name() == "MatMul" for r in readers):
            skipped[name] = ("read by " + ", ".join(sorted({r.get_type_name() for r in readers})) +
                             ": only a norm that feeds MatMuls directly folds")
        elif any(r.get_attributes().get("transpose_a") or constant_value(r.input_value(1)) is None for r in readers):
            skipped[name] = "a MatMul it feeds does not read its channel axis with constant weights"
        elif any(_weight(r).shape[1] != channels for r in readers):
            skipped[name] = "a MatMul it feeds does not read its channel axis"
        else:
            folds[name] = tuple(r.get_friendly_name() for r in readers)
    return folds, skipped


def _weight(matmul) -> np.ndarray:
    """The MatMul's constant weight as out x in."""
    w = constant_value(matmul.input_value(1))
    return w if matmul.get_attributes().get("transpose_b") else w.T


def _set(node, port: int, value: np.ndarray) -> None:
    node.input(port).replace_source_output(f32_constant(value).output(0))


def reparameterize(model, items: list[torch.Tensor], knobs: Reparameterization) -> tuple[object, ReparamReport]:
    """A copy of the float IR ``model`` with every foldable norm output equalised per channel, ranged on ``items``;
    ``model`` is left untouched."""
    from openvino import opset13 as ops

    model = model.clone()
    folds, skipped = foldable_norms(model)
    report = ReparamReport(skipped=skipped)
    if not folds:
        return model, report
    names = list(folds)
    reader = TensorReader(model, [(name, "out") for name in names])
    lo: dict[str, torch.Tensor] = {}
    hi: dict[str, torch.Tensor] = {}
    for chunk in batches([x.numpy() for x in items], BATCH):
        for name, out in zip(names, reader(chunk)):
            flat = out.reshape(-1, out.shape[-1])
            low, high = flat.amin(0), flat.amax(0)
            lo[name] = torch.minimum(lo[name], low) if name in lo else low
            hi[name] = torch.maximum(hi[name], high) if name in hi else high
    by_name = ops_by_name(model)
    for name, matmuls in folds.items():
        centre, half, ratio = channel_scales(lo[name], hi[name], knobs)
        m, r = centre.double().numpy(), ratio.double().numpy()
        add = by_name[name]
        mul, gamma_port, beta_port = _affine_constants(add)
        gamma, beta = constant_value(mul.input_value(gamma_port)), constant_value(add.input_value(beta_port))
        _set(mul, gamma_port, (np.broadcast_to(gamma.reshape(-1), r.shape) / r).reshape(
            gamma.shape if gamma.size == r.size else (-1,)))
        _set(add, beta_port, ((np.broadcast_to(beta.reshape(-1), r.shape) - m) / r).reshape(
            beta.shape if beta.size == r.size else (-1,)))
        for mm_name in matmuls:
            matmul = by_name[mm_name]
            w = _weight(matmul).astype(np.float64)
            shift = w @ m
            w = w * r[None, :]
            _set(matmul, 1, w if matmul.get_attributes().get("transpose_b") else w.T)
            bias = bias_add(matmul)
            if bias is None:
                readers = list(matmul.output(0).get_target_inputs())
                new = ops.add(matmul.output(0), f32_constant(shift))
                new.set_friendly_name(f"{mm_name}/qmlp_bias")
                for t in readers:
                    t.replace_source_output(new.output(0))
            else:
                port = next(i for i in range(2) if bias.input_value(i).get_node() is not matmul)
                b = constant_value(bias.input_value(port))
                _set(bias, port, (b.reshape(-1) + shift).reshape(b.shape if b.size == shift.size else (-1,)))
        report.folds.append(Fold(name, matmuls, spread(half), spread(half / ratio)))
    model.validate_nodes_and_infer_types()
    return model, report


__all__ = ["reparameterize", "foldable_norms"]
