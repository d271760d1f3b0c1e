"""The recipes on NNCF's OpenVINO backend: ``nncf.quantize(ov_model)``, then the same rule post-pass over its
FakeQuantize nodes that ``respec`` runs over the torch hooks.

Roles come from the float IR's ``NNCFGraph`` (``roles.GraphRoles``: one detector for both backends). Each
FakeQuantize that NNCF placed is mapped back to the float graph (through what NNCF inserted: SmoothQuant's
Multiply), its rules resolved, and then it is removed (kept in float) or rebuilt: levels for the bits,
symmetric or affine low/high, per-channel shapes for weights, ranges from the project's own estimators
(``calibration.RangeCollector``, on OpenVINO inference of the calibration items with every FakeQuantize
bypassed, as the torch pass disables its quantizers). The range math is NNCF's own
``calculate_quantizer_parameters``, as on torch. Weights end as compressed int8/int4 constants:
``compress_quantize_weights_transformation`` runs after the pass, as ``nncf.quantize`` itself would run it.

Range tuning, QAT and ``auto:`` recipes need torch autograd or the torch probe: on an OpenVINO model they are one
clear error (:func:`check_recipe`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .calibration import RangeCollector
from .recipes import Recipe
from .placement import PlacementPlan, plan as placement_plan
from .respec import Decision, calibrated_ranges, check_half_range, vector_weight_spec, weight_range
from .roles import GraphRoles, Site
from .rules import resolve
from .specs import QuantizerSpec, SpecError

CALIBRATION_BATCH = 16
TORCH_ONLY = "use the torch path (quantize the torch model, then `qmlp export`)"


class IRError(ValueError):
    """An IR that cannot be quantized as given: the message names the problem and the fix."""


def is_openvino_model(model) -> bool:
    try:
        import openvino as ov
    except ImportError:
        return False
    return isinstance(model, ov.Model)


def read_ir(path: str | Path):
    """``ov.Model`` from ``model.xml`` (or its folder), with a clear error for a missing or broken file."""
    import openvino as ov

    p = Path(path)
    if p.is_dir():
        p = p / "model.xml"
    if not p.is_file():
        raise IRError(f"--ir {path}: no such file; give the model.xml of an OpenVINO IR (ov.save_model, "
                      f"optimum-cli export openvino, `qmlp export`), or its folder")
    if p.suffix == ".xml" and not p.with_suffix(".bin").is_file():
        raise IRError(f"--ir {p}: its weights file {p.with_suffix('.bin').name} is missing next to it")
    try:
        return ov.Core().read_model(str(p))
    except RuntimeError as e:
        raise IRError(f"--ir {p}: OpenVINO cannot read it ({str(e).splitlines()[0]}); give an IR .xml "
                      f"(or an .onnx) that `ov.Core().read_model` accepts") from None


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


# ------------------------------------------------------------------------------------------------ sites
def _fake_quantizes(model) -> list:
    return [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]


def _data_source(node, known: set):
    """The output feeding ``node``'s first non-constant input, through ops NNCF inserted (SmoothQuant)."""
    out = node.input_value(0)
    while out.get_node().get_friendly_name() not in known:
        inserted = out.get_node()
        data = [inserted.input_value(i) for i in range(inserted.get_input_size())
                if inserted.input_value(i).get_node().get_type_name() != "Constant"]
        if not data:
            break
        out = data[0]
    return out


def _readers(output, known: set) -> list:
    """(node, input port) pairs of the float graph that read ``output``, through ops NNCF inserted."""
    out = []
    for target in output.get_target_inputs():
        node = target.get_node()
        if node.get_friendly_name() in known:
            out.append((node, target.get_index()))
        else:
            for i in range(node.get_output_size()):
                out.extend(_readers(node.output(i), known))
    return out


def fq_site(roles: GraphRoles, fq, known: set) -> Site:
    """The site of one FakeQuantize of the quantized model, on the float model's graph."""
    source = _data_source(fq, known)
    node = roles.graph.get_node_by_name(source.get_node().get_friendly_name())
    readers = _readers(fq.output(0), known)
    if not readers:
        raise RuntimeError(f"FakeQuantize {fq.get_friendly_name()} feeds no op of the float model")
    consumers = [roles.graph.get_node_by_name(n.get_friendly_name()) for n, _ in readers]
    name = fq.get_friendly_name()
    if roles.is_const(node):
        return roles.weight_site(name, consumers[0], readers[0][1])
    return roles.activation_site(name, node, source.get_index(), node, roles.expand(consumers))


# ------------------------------------------------------------------------------------------------ ranges
def _collect(model, decisions: list[Decision], items: list[np.ndarray]) -> dict:
    """Per-op range collectors fed by OpenVINO inference (true f32) with every FakeQuantize bypassed."""
    import openvino as ov

    probe = model.clone()
    fqs = {op.get_friendly_name(): op for op in _fake_quantizes(probe)}
    watch = [d for d in decisions if d.spec is not None and not d.site.is_weight]
    base = len(probe.outputs)
    probe.add_outputs([fqs[d.site.hook_name].input_value(0) for d in watch])
    for fq in fqs.values():
        fq.output(0).replace(fq.input_value(0))
    config = {"INFERENCE_PRECISION_HINT": "f32"}  # ranges of the float model, not of its bf16 execution
    static = list(probe.inputs[0].get_partial_shape())
    try:  # batches of CALIBRATION_BATCH items; statistics stay per item
        batched = probe.clone()
        batched.reshape({batched.inputs[0]: [-1, *static[1:]]})
        request = ov.Core().compile_model(batched, "CPU", config).create_infer_request()
        request.infer({0: np.concatenate(items[:2])})
        batch = CALIBRATION_BATCH
    except RuntimeError:  # an IR with a hard-coded batch
        request, batch = ov.Core().compile_model(probe, "CPU", config).create_infer_request(), 1
    collectors = {d.site.hook_name: RangeCollector(d.spec) for d in watch}
    for i in range(0, len(items), batch):
        request.infer({0: np.concatenate(items[i:i + batch])})
        for k, d in enumerate(watch):
            collectors[d.site.hook_name](torch.from_numpy(request.get_output_tensor(base + k).data.copy()))
    return collectors


def _const(value: np.ndarray):
    from openvino import opset13 as ops

    return ops.constant(np.ascontiguousarray(value, dtype=np.float32))


def _weight_value(fq) -> np.ndarray:
    node = fq.input_value(0).get_node()
    while node.get_type_name() != "Constant":  # e.g. Convert of an f16 constant
        node = node.input_value(0).get_node()
    return node.get_data().astype(np.float32)


def _channel_axis(fq, weight: np.ndarray) -> int:
    """The output-channel axis of a weight: where NNCF's per-channel FakeQuantize constants are not 1, else from
    the consumer (MatMul: last axis, or the one before with ``transpose_b``; Convolution: 0)."""
    shape = list(fq.input_value(1).get_shape())
    if len(shape) == weight.ndim and sum(s != 1 for s in shape) == 1:
        return next(i for i, s in enumerate(shape) if s != 1)
    consumer = next(iter(fq.output(0).get_target_inputs())).get_node()
    if consumer.get_type_name() == "MatMul":
        return weight.ndim - 2 if consumer.get_attributes().get("transpose_b") else weight.ndim - 1
    return 0


def _weight_limits(fq, spec: QuantizerSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of a weight for ``spec``, shaped to broadcast against it (``respec``'s math)."""
    w = _weight_value(fq)
    axis = _channel_axis(fq, w)
    _, low, high = weight_range(torch.from_numpy(np.moveaxis(w, axis, 0).copy()), spec)
    shape = [1] * w.ndim
    if spec.per_channel:
        shape[axis] = w.shape[axis]
    return low.numpy().reshape(shape), high.numpy().reshape(shape)


def _fq_parameters(spec: QuantizerSpec, low: np.ndarray, high: np.ndarray, is_weight: bool):
    from nncf.common.quantization.structs import QuantizationScheme, QuantizerConfig, QuantizerGroup
    from nncf.common.tensor_statistics.statistics import MinMaxTensorStatistic
    from nncf.quantization.fake_quantize import calculate_quantizer_parameters
    from nncf.tensor import Tensor

    mode = QuantizationScheme.SYMMETRIC if spec.symmetric else QuantizationScheme.ASYMMETRIC
    config = QuantizerConfig(num_bits=spec.bits, mode=mode, per_channel=spec.per_channel,
                             narrow_range=is_weight and spec.symmetric)
    stats = MinMaxTensorStatistic(min_values=Tensor(np.asarray(low, np.float32)),
                                  max_values=Tensor(np.asarray(high, np.float32)))
    group = QuantizerGroup.WEIGHTS if is_weight else QuantizerGroup.ACTIVATIONS
    return calculate_quantizer_parameters(stats, config, group, half_range=check_half_range(spec, is_weight))


def _replace_constants(fq, params, shape: Optional[list] = None) -> None:
    values = [params.input_low, params.input_high, params.output_low, params.output_high]
    for port, v in enumerate(values, start=1):
        v = np.asarray(v.data, np.float32)
        fq.input(port).replace_source_output(_const(v.reshape(shape) if shape is not None else v).output(0))
    fq.set_attribute("levels", int(params.levels))


def _set_bits(fq, bits: int) -> None:
    """What setting ``num_bits`` on an NNCF torch quantizer does, on a FakeQuantize: the scale (high) stays; a signed
    symmetric range ``[-high * L / (L - 2), high]`` (L = 2^bits levels, NNCF's level_low / level_high) is rebuilt
    for the new L; narrow-range (weights: odd levels), unsigned and affine ranges keep their limits."""
    old = fq.get_attributes()["levels"]
    narrow = old % 2 == 1
    levels = 2 ** bits - narrow
    if levels == old:
        return
    low, high = (fq.input_value(i).get_node() for i in (1, 2))
    if not narrow and low.get_type_name() == "Constant" and high.get_type_name() == "Constant":
        lo, hi = low.get_data().astype(np.float32), high.get_data().astype(np.float32)
        signed_symmetric = np.allclose(lo, -hi * old / (old - 2), rtol=1e-4) and np.all(hi > 0)
        if signed_symmetric:
            new_low = _const((-hi * levels / (levels - 2)).reshape(lo.shape))
            fq.input(1).replace_source_output(new_low.output(0))
            out_low = fq.input_value(3).get_node()
            if out_low.get_type_name() == "Constant" and np.allclose(out_low.get_data(), lo):
                fq.input(3).replace_source_output(new_low.output(0))
    fq.set_attribute("levels", levels)


# ------------------------------------------------------------------------------------------------ the pass
def apply_placement(model, plan: PlacementPlan) -> list[tuple[str, ...]]:
    """Remove and insert the plan's FakeQuantize nodes (placeholders: :func:`respecify` specifies and calibrates
    them); returns the plan's shared-range groups as FakeQuantize names."""
    from openvino import opset13 as ops

    by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    for name in plan.remove:
        fq = by_name[name]
        fq.output(0).replace(fq.input_value(0))
    names = {}
    for ins in plan.insert:
        out = by_name[ins.op].output(0)
        targets = list(out.get_target_inputs())
        if ins.reader is not None:
            targets = [t for t in targets if t.get_node().get_friendly_name() == ins.reader
                       and t.get_index() == ins.port] or targets
        one, minus = _const(np.array(1.0)), _const(np.array(-1.0))
        fq = ops.fake_quantize(out, minus, one, minus, one, 256)
        names[ins] = f"qmlp_placement/{ins.op}" + (f"/{ins.reader}:{ins.port}" if ins.reader else "")
        fq.set_friendly_name(names[ins])
        for t in targets:
            t.replace_source_output(fq.output(0))
    return plan.shared_names(names)


def respecify(model, roles: GraphRoles, rules, defaults: dict[str, QuantizerSpec], items: list[np.ndarray],
              recalibrate: bool = True, shared=()) -> list[Decision]:
    """Apply ``rules`` to every FakeQuantize of the NNCF-quantized ``model`` (in place); see ``respec.respecify``."""
    known = {n.node_name for n in roles.graph.get_all_nodes()}
    fqs = _fake_quantizes(model)
    decisions = []
    for fq in fqs:
        site = fq_site(roles, fq, known)
        spec, keep_float = resolve(site, rules, defaults["weights" if site.is_weight else "activations"])
        decisions.append(Decision(site, None if keep_float else spec))
    collectors = _collect(model, decisions, items) if recalibrate else {}
    calibrated = calibrated_ranges(collectors, shared)
    for fq, d in zip(fqs, decisions):
        if d.spec is None:
            fq.output(0).replace(fq.input_value(0))
            continue
        if not recalibrate:  # the stock baselines: NNCF's range, only the bit width changes
            _set_bits(fq, d.spec.bits)
            continue
        if d.site.is_weight:
            d.spec = vector_weight_spec(d.spec, _weight_value(fq).ndim)
            low, high = _weight_limits(fq, d.spec)
            _replace_constants(fq, _fq_parameters(d.spec, low, high, True))
        else:
            d.calibrated = calibrated[d.site.hook_name]
            params = _fq_parameters(d.spec, np.array(d.calibrated[0]), np.array(d.calibrated[1]), False)
            _replace_constants(fq, params, list(fq.input_value(1).get_shape()))
            d.low = [float(np.asarray(params.input_low.data).reshape(-1)[0])]
            d.high = [float(np.asarray(params.input_high.data).reshape(-1)[0])]
    model.validate_nodes_and_infer_types()
    return decisions


def post_training(model, items: list[torch.Tensor], recipe: Recipe, roles: GraphRoles, family: str,
                  ignored_scope, log):
    """``nncf.quantize`` on the OpenVINO model with the recipe's global settings, then the rule post-pass."""
    import nncf
    from nncf.openvino.quantization.backend_parameters import BackendParameters
    from openvino._offline_transformations import compress_quantize_weights_transformation

    from .ov_weights import int4_on_int8_kernels

    from .family_rules import family_rules
    from .ptq import NNCF_SEED_ITEMS, _check_scopes, _nncf_kwargs

    arrays = [x.numpy() for x in items]
    seeds = arrays[:NNCF_SEED_ITEMS] if recipe.recalibrate else arrays
    kwargs = _nncf_kwargs(recipe, ignored_scope)
    kwargs["advanced_parameters"].backend_params[BackendParameters.COMPRESS_WEIGHTS] = False  # after the pass
    quantized = nncf.quantize(model, nncf.Dataset(seeds), subset_size=len(seeds), **kwargs)
    rules = (family_rules(family) if recipe.family_rules else ()) + recipe.rules
    _check_scopes(rules, roles)
    defaults = {"weights": recipe.weights, "activations": recipe.activations}
    shared = ()
    if recipe.recalibrate and recipe.placement.active:
        known = {n.node_name for n in roles.graph.get_all_nodes()}
        sites = [fq_site(roles, fq, known) for fq in _fake_quantizes(quantized)]
        shared = apply_placement(quantized, placement_plan(roles, sites, recipe.placement, rules, recipe.activations))
    decisions = respecify(quantized, roles, rules, defaults, arrays, recalibrate=recipe.recalibrate, shared=shared)
    compress_quantize_weights_transformation(quantized)
    int4_on_int8_kernels(quantized)  # 4-bit weights on disk, int8 GEMM kernels (as the torch path exports)
    return quantized, decisions


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
    for fq in _fake_quantizes(model):
        low = fq.input_value(1).get_node()
        rows.append({"name": fq.get_friendly_name(), "levels": fq.get_attributes()["levels"],
                     "low_shape": list(fq.input_value(1).get_shape()),
                     "input": fq.input_value(0).get_node().get_type_name(),
                     "low": low.get_data().reshape(-1).tolist() if low.get_type_name() == "Constant" else None})
    return rows


__all__ = ["IRError", "is_openvino_model", "read_ir", "image_input", "post_training", "respecify", "fq_site",
           "graph_roles", "family_of_graph", "check_recipe", "fq_census"]
