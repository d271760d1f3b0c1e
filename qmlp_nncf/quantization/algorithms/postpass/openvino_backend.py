"""The post-pass over the FakeQuantize nodes of ``nncf.quantize(ov_model)`` (:class:`OpenVINOBackend`).

Roles come from the float IR's ``NNCFGraph`` (``roles.GraphRoles``: one detector for both backends). Each
FakeQuantize that NNCF placed is mapped back to the float graph (through what NNCF inserted: SmoothQuant's
Multiply); the algorithm then removes it (kept in float) or rebuilds it: levels for the bits, symmetric or affine
low/high, per-channel shapes for weights, ranges from the project's own estimators (``calibration.RangeCollector``,
on OpenVINO inference of the calibration items with every FakeQuantize bypassed, as the torch pass disables its
quantizers). The range math is NNCF's own, as on torch (``parameters.quantizer_parameters``). Weights end as
compressed int8/int4 constants: ``compress_quantize_weights_transformation`` runs after the pass (and after
weight error correction, which solves the float constants under the weight FakeQuantizes), as
``nncf.quantize`` itself would run it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from ...openvino_model import (check_items, check_recipe, constant_value, f32_constant, fake_quantizes, family_of_graph,
                               graph_roles, image_input, int4_on_int8_kernels)
from ...rules.calibration import CALIBRATION_BATCH, RangeCollector, batches
from ...rules.placement import PlacementPlan
from ...rules.roles import GraphRoles, Site
from .backend import PostPassBackend
from .parameters import quantizer_parameters


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


def _replace_constants(fq, params, shape: Optional[list] = None) -> None:
    values = [params.input_low, params.input_high, params.output_low, params.output_high]
    for port, v in enumerate(values, start=1):
        v = np.asarray(v.data, np.float32)
        fq.input(port).replace_source_output(f32_constant(v.reshape(shape) if shape is not None else v).output(0))
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
            new_low = f32_constant((-hi * levels / (levels - 2)).reshape(lo.shape))
            fq.input(1).replace_source_output(new_low.output(0))
            out_low = fq.input_value(3).get_node()
            if out_low.get_type_name() == "Constant" and np.allclose(out_low.get_data(), lo):
                fq.input(3).replace_source_output(new_low.output(0))
    fq.set_attribute("levels", levels)


class OpenVINOBackend(PostPassBackend):
    """The post-pass over an ``openvino.Model``'s FakeQuantize nodes (site names are their friendly names)."""

    MODEL = "the OpenVINO {family} model"

    @classmethod
    def prepare(cls, model, recipe):
        check_recipe(recipe)
        image_input(model)
        if fake_quantizes(model):
            raise ValueError("the IR already holds FakeQuantize nodes (it is quantized); give the float IR")
        return model

    @classmethod
    def bind(cls, model, items, roles=True):
        check_items(model, items)
        graph = graph_roles(model)
        return cls(graph), family_of_graph(graph), None

    def copy(self, model):
        return model.clone()

    def inputs(self, items):
        return [x.numpy() for x in items]

    def nncf_kwargs(self, kwargs):
        from nncf.openvino.quantization.backend_parameters import BackendParameters

        kwargs["advanced_parameters"].backend_params[BackendParameters.COMPRESS_WEIGHTS] = False  # after the pass
        return kwargs

    def sites(self, model):
        known = {n.node_name for n in self.roles.graph.get_all_nodes()}
        fqs = fake_quantizes(model)
        if len({fq.get_friendly_name() for fq in fqs}) != len(fqs):
            raise RuntimeError("the model's FakeQuantize nodes do not have unique names")
        return [replace(fq_site(self.roles, fq, known), handle=fq) for fq in fqs]  # the handle: the node itself

    def apply_placement(self, model, plan: PlacementPlan, placeholder):
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
            one, minus = f32_constant(np.array(1.0)), f32_constant(np.array(-1.0))
            fq = ops.fake_quantize(out, minus, one, minus, one, 256)
            names[ins] = f"qmlp_placement/{ins.op}" + (f"/{ins.reader}:{ins.port}" if ins.reader else "")
            fq.set_friendly_name(names[ins])
            for t in targets:
                t.replace_source_output(fq.output(0))
        return plan.shared_names(names)

    def collect(self, model, decisions, items):
        """Per-op range collectors fed by OpenVINO inference (true f32) with every FakeQuantize bypassed."""
        import openvino as ov

        probe = model.clone()
        fqs = {op.get_friendly_name(): op for op in fake_quantizes(probe)}
        base = len(probe.outputs)
        probe.add_outputs([fqs[d.site.hook_name].input_value(0) for d in decisions])
        for fq in fqs.values():
            fq.output(0).replace(fq.input_value(0))
        config = {"INFERENCE_PRECISION_HINT": "f32"}  # ranges of the float model, not of its bf16 execution
        static = list(probe.inputs[0].get_partial_shape())
        arrays = self.inputs(items)
        try:  # batches of CALIBRATION_BATCH items; statistics stay per item
            batched = probe.clone()
            batched.reshape({batched.inputs[0]: [-1, *static[1:]]})
            request = ov.Core().compile_model(batched, "CPU", config).create_infer_request()
            request.infer({0: np.concatenate(arrays[:2])})
            batch = CALIBRATION_BATCH
        except RuntimeError:  # an IR with a hard-coded batch
            request, batch = ov.Core().compile_model(probe, "CPU", config).create_infer_request(), 1
        collectors = {d.site.hook_name: RangeCollector(d.spec) for d in decisions}
        for chunk in batches(arrays, batch):
            request.infer({0: np.concatenate(chunk)})
            for k, d in enumerate(decisions):
                collectors[d.site.hook_name](torch.from_numpy(request.get_output_tensor(base + k).data.copy()))
        return collectors

    def bypass(self, model, site):
        fq = site.handle
        fq.output(0).replace(fq.input_value(0))

    def set_bits(self, model, site, bits):
        _set_bits(site.handle, bits)

    def weight(self, model, site):
        fq = site.handle
        w = constant_value(fq.input_value(0))
        return torch.from_numpy(np.moveaxis(w, _channel_axis(fq, w), 0).copy())

    def install(self, model, decision, shape, low, high):
        fq, spec = decision.site.handle, decision.spec
        if decision.site.is_weight:  # the range shaped to broadcast against the weight
            w = constant_value(fq.input_value(0))
            axis = _channel_axis(fq, w)
            shape = [1] * w.ndim
            if spec.per_channel:
                shape[axis] = w.shape[axis]
            _replace_constants(fq, quantizer_parameters(spec, low.numpy().reshape(shape),
                                                        high.numpy().reshape(shape), True))
        else:
            params = quantizer_parameters(spec, low.numpy(), high.numpy(), False)
            _replace_constants(fq, params, list(fq.input_value(1).get_shape()))
            decision.low = [float(np.asarray(params.input_low.data).reshape(-1)[0])]
            decision.high = [float(np.asarray(params.input_high.data).reshape(-1)[0])]

    def finish(self, model, decisions, recalibrate):
        model.validate_nodes_and_infer_types()

    def finalize(self, model):
        """Weights as compressed int8/int4 constants, 4-bit ones on int8 kernels (as the torch path exports)."""
        from openvino._offline_transformations import compress_quantize_weights_transformation

        model.validate_nodes_and_infer_types()
        compress_quantize_weights_transformation(model)
        int4_on_int8_kernels(model)

    def reparameterize(self, model, items, knobs):
        from ..reparam.openvino_backend import reparameterize

        folded, report = reparameterize(model, items, knobs)
        return folded, report.to_dict()

    def correct_weights(self, quantized, model, items, knobs, log, keep_float=()):
        from ..error_correction.openvino_backend import correct_weights

        return correct_weights(quantized, model, items, knobs, log, keep_float=tuple(s.hook_name for s in keep_float))
