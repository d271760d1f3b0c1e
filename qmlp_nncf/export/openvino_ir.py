"""Torch model (float, ``nncf.quantize``d or ``nncf.compress_weights``ed) -> OpenVINO IR on disk.

The IR keeps FP32 constants (``compress_to_fp16=False``), a static input shape unless
``dynamic_batch``, and our metadata under ``rt_info["qmlp_nncf"]``. Writes are atomic: the IR
is built in a temporary folder next to the target and renamed into place, so a failed export
leaves nothing behind and a reader never sees a half-written model.
"""
from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ..atomic import staged_folder
from ..ir_file import read_ir

RT_INFO_KEY = "qmlp_nncf"
XML_NAME = "model.xml"


class ExportError(ValueError):
    """The model cannot be exported, or the target cannot be written; the message says why.

    A ValueError, so the ``qmlp`` command reports it as a one-line error."""


@dataclass(frozen=True)
class ExportResult:
    xml: Path
    bin: Path
    metadata: dict[str, str]
    ovms_config: Optional[dict] = None  # the entry to add to an OVMS config.json "model_config_list"

    def to_json(self) -> dict:
        out = {"xml": str(self.xml), "bin": str(self.bin), "bin_bytes": self.bin.stat().st_size,
               "metadata": self.metadata}
        if self.ovms_config:
            out["ovms_config"] = self.ovms_config
        return out


def versions() -> dict[str, str]:
    """Versions of the packages that shape an IR, for its metadata."""
    import openvino

    out = {}
    for pkg in ("qmlp_nncf", "nncf", "torch", "timm"):
        try:
            out[f"{pkg}_version"] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[f"{pkg}_version"] = "unknown"
    out["openvino_version"] = openvino.get_version()
    return out


def failed_ops(message: str) -> list[str]:
    """The op names OpenVINO's PyTorch frontend reports as unconvertible (``aten::histc``, ...)."""
    ops: list[str] = []
    for m in re.finditer(r"(?:No conversion rule found for operations|Conversion is failed for):\s*([^\n|]+)",
                         message):
        ops += [o.strip() for o in m.group(1).split(",") if o.strip()]
    real = [o for o in ops if o != "prim::Constant"]  # string/None constants fail only as a consequence
    return list(dict.fromkeys(real or ops))


def convert(model: torch.nn.Module, input_shape: Sequence[int], dynamic_batch: bool = False,
            w4_kernels: str = "int8"):
    """``ov.convert_model`` with an error that names the failing op; ``w4_kernels="int8"`` runs the 4-bit
    weights of a statically quantized model on int8 kernels (:func:`int4_on_int8_kernels`), ``"i4"`` leaves
    them to OpenVINO's weight-decompression kernels."""
    check_w4_kernels(w4_kernels)
    import openvino as ov

    input_shape = [int(d) for d in input_shape]
    example = torch.randn(*input_shape)
    shape = [-1, *input_shape[1:]] if dynamic_batch else input_shape
    was_training = model.training
    model.eval()
    snapped: list[tuple] = []
    try:
        snapped += snap_quantized_weights(model, example)
        with torch.no_grad(), warnings.catch_warnings():
            # tracing re-runs the model and flags fake-quant rounding differences: expected, not a problem
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # torch 2.x deprecates the jit.trace that ov.convert_model uses: nothing a user can act on
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            ov_model = ov.convert_model(model, example_input=example, input=[shape])
    except Exception as e:  # OpConversionFailure, tracing errors, shape errors...
        msg = str(e)
        ops = failed_ops(msg)
        where = f"op(s) {', '.join(ops)} could not be converted" if ops else "conversion failed"
        detail = next((line.strip() for line in msg.splitlines()
                       if line.strip() and not line.startswith("Check ")), msg.strip())
        raise ExportError(f"OpenVINO cannot convert {type(model).__name__} with input {shape}: {where} "
                          f"({type(e).__name__}: {detail}). Replace the op(s) in the model, or check that "
                          f"the input shape matches the model.") from e
    finally:
        with torch.no_grad():
            for param, original in snapped:
                param.copy_(original)
        model.train(was_training)
    fold_elementwise_decompression(ov_model)
    keep_reduced_dims_before_fake_quantize(ov_model)
    align_asymmetric_fake_quantize(model, ov_model)
    from ..quantization.openvino_model import int4_on_int8_kernels, is_statically_quantized

    if w4_kernels == "int8" and is_statically_quantized(ov_model):
        int4_on_int8_kernels(ov_model)
    return ov_model


def quantized_census(model: torch.nn.Module, input_shape: Sequence[int], w4_kernels: str = "int8") -> dict:
    """:func:`qmlp_nncf.census.ir_census` of the IR that :func:`convert` makes of ``model``."""
    from ..census import ir_census

    return ir_census(convert(model, input_shape, w4_kernels=w4_kernels))


def record_auto_census(result, census: dict, log=lambda m: None) -> None:
    """Put the census of an ``auto:`` result's IR in its report and its recipe (what the kept finish runs in float)."""
    if result.auto is None:
        return
    result.auto.census = census
    result.auto.recipe_json["census"] = census
    log(f"{result.recipe.name}: layers the IR runs in float: "
        + ", ".join(f"{g} {n}" for g, n in census["float"].items()))


def snap_quantized_weights(model: torch.nn.Module, example: torch.Tensor) -> list[tuple]:
    """Replace each parameter that an enabled NNCF quantizer fake-quantizes by torch's fake-quantized value,
    so that the IR's integer weights are exactly torch's; returns ``(parameter, original value)`` pairs to restore.

    A weight exactly half a step between two levels is a rounding tie, and NNCF's kernel (which rounds
    ``(w - input_low) / step``) and OpenVINO's weight compression (which rounds ``w / step``) break it
    differently. NNCF's ``overflow_fix`` makes ties certain: the first layer's per-channel scale is twice the
    channel's largest ``|w|``, which lands on level 63.5 of an 8-bit narrow-range quantizer. Values already on
    the grid quantize to themselves in both, so snapping changes nothing torch computes."""
    try:
        from nncf.torch.quantization.layers import BaseQuantizer
    except ImportError:
        return []
    params = {p.data_ptr(): p for p in model.parameters() if p.is_floating_point()}
    if not params:
        return []
    seen: dict[int, torch.Tensor] = {}

    def hook(module, inputs, output):
        x = inputs[0] if inputs else None
        if isinstance(x, torch.Tensor) and x.data_ptr() in params and x.shape == output.shape:
            seen[x.data_ptr()] = output.detach().clone()

    quantizers = [m for m in model.modules() if isinstance(m, BaseQuantizer) and m.is_enabled_quantization()]
    handles = [m.register_forward_hook(hook) for m in quantizers]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    snapped = []
    with torch.no_grad():
        for ptr, value in seen.items():
            param = params[ptr]
            if not torch.equal(param, value):
                snapped.append((param, param.detach().clone()))
                param.copy_(value)
    return snapped


def _off_grid_asymmetric_quantizers(model: torch.nn.Module) -> list[tuple]:
    """``(levels, exported low/high, torch low/high)`` of each NNCF asymmetric quantizer whose zero is off its grid
    (``quantization.algorithms.zero_grid``: a 4-bit quantizer after GELU, low -0.17, step ~0.5)."""
    try:
        from ..quantization.algorithms.zero_grid import off_grid_window
    except ImportError:  # NNCF's torch backend is absent
        return []
    out = []
    for m in model.modules():
        window = off_grid_window(m)
        if window is not None:
            low, width, exported = (t.double() for t in window)
            out.append((m.levels, exported.numpy(), (exported + width).numpy(), low.numpy(), (low + width).numpy()))
    return out


def align_asymmetric_fake_quantize(model: torch.nn.Module, ov_model) -> int:
    """Give the IR's activation FakeQuantize the rounding thresholds of NNCF's torch quantizer.

    NNCF's asymmetric quantizer (``Quantize_forward``) clamps ``x`` to ``[low, low + range]``, rounds
    ``(x - low) / scale`` and outputs ``(level - zp) * scale``, ``zp = round(-low / scale)``. Its export
    (``torch.fake_quantize_per_tensor_affine`` with the integer ``zp``) rounds ``x / scale - zp`` instead. The two
    agree only when ``-low / scale`` is an integer, which ``TuneRange`` does not ensure when it rounds to 0 or
    ``levels - 1``: then every rounding threshold of the IR is ``low + zp * scale`` (up to half a step) off
    torch's. A FakeQuantize with input range ``[low, low + range]`` and output range
    ``[-zp * scale, (levels - 1 - zp) * scale]`` computes exactly what torch does. Returns the number of
    FakeQuantize nodes changed."""
    import numpy as np
    from openvino import opset13

    quantizers = _off_grid_asymmetric_quantizers(model)
    if not quantizers:
        return 0
    changed = 0
    for fq in ov_model.get_ordered_ops():
        if fq.get_type_name() != "FakeQuantize" or fq.input_value(0).get_node().get_type_name() == "Constant":
            continue
        consts = [fq.input_value(j).get_node() for j in range(1, 5)]
        if any(c.get_type_name() != "Constant" for c in consts):
            continue
        il, ih, ol, oh = (c.get_data().astype(np.float64) for c in consts)
        hits = {(lo.tobytes(), hi.tobytes()): (lo, hi) for levels, xl, xh, lo, hi in quantizers
                if levels == fq.get_levels() and xl.size == il.size
                and np.allclose(il.ravel(), xl.ravel(), rtol=1e-5, atol=1e-7) and np.allclose(il, ol)
                and np.allclose(ih.ravel(), xh.ravel(), rtol=1e-5, atol=1e-7) and np.allclose(ih, oh)}
        if len(hits) != 1:
            continue  # not one of them, or two quantizers export the same FakeQuantize with different thresholds
        lo, hi = next(iter(hits.values()))
        for j, v in ((1, lo), (2, hi)):
            fq.input(j).replace_source_output(
                opset13.constant(v.astype(np.float32).reshape(il.shape)).output(0))
        changed += 1
    if changed:
        ov_model.validate_nodes_and_infer_types()
    return changed


_REDUCE_OPS = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"}


def keep_reduced_dims_before_fake_quantize(ov_model) -> int:
    """Rewrite ``Reduce(keep_dims=False) -> [Multiply/Add by a constant]* -> FakeQuantize`` as the same ops with
    ``keep_dims=True`` and a ``Squeeze`` after the FakeQuantize; returns the number of chains rewritten.

    OpenVINO 2026.4's CPU plugin fuses a per-channel FakeQuantize (or a per-channel Multiply folded into one, as
    SmoothQuant's scale before a pooled classifier head is) into a Reduce whose reduced dims are dropped, and
    computes it wrong: most outputs land tens of levels off, and garbage at batch 200
    (``docs/repro/ov_reduce_fake_quantize.py``). With the dims kept, a reduction over axis 1 (token pooling of
    ``[N, T, C]``) leaves axis 1 of size 1, the plugin does not fuse the chain, and the values are the same ops on
    the same numbers. A reduction that keeps axis 1 (e.g. over the last axis) is left as it is: keeping dims does not help
    there."""
    import numpy as np
    from openvino import opset13

    rewritten = 0
    for fq in ov_model.get_ordered_ops():
        if fq.get_type_name() != "FakeQuantize":
            continue
        chain, node = [], fq.input_value(0).get_node()
        while (node.get_type_name() in ("Multiply", "Add") and len(node.output(0).get_target_inputs()) == 1
               and node.input_value(1).get_node().get_type_name() == "Constant"):
            chain.append(node)
            node = node.input_value(0).get_node()
        reduce = node
        if (reduce.get_type_name() not in _REDUCE_OPS or reduce.get_attributes().get("keep_dims", True)
                or len(reduce.output(0).get_target_inputs()) != 1
                or not reduce.get_output_partial_shape(0).rank.is_static
                or reduce.input_value(1).get_node().get_type_name() != "Constant"):
            continue
        if any(fq.input_value(j).get_node().get_type_name() != "Constant" for j in range(1, 5)):
            continue
        rank = reduce.get_input_partial_shape(0).rank.get_length()
        axes = sorted(int(a) % rank for a in np.ravel(reduce.input_value(1).get_node().get_data()))
        if 1 not in axes:
            continue  # kept dims leave the per-channel axis where it is: the plugin fuses it, and errs, either way

        def kept(value):  # a constant broadcast against the reduced output, with 1s at the kept axes
            data = value.get_node().get_data()
            data = data.reshape((1,) * (rank - len(axes) - data.ndim) + data.shape)
            return opset13.constant(np.expand_dims(data, axes) if data.ndim else data).output(0)

        op = getattr(opset13, {"ReduceMean": "reduce_mean", "ReduceSum": "reduce_sum", "ReduceMax": "reduce_max",
                               "ReduceMin": "reduce_min", "ReduceProd": "reduce_prod"}[reduce.get_type_name()])
        out = op(reduce.input_value(0), reduce.input_value(1), True).output(0)
        for elt in reversed(chain):
            out = (opset13.multiply if elt.get_type_name() == "Multiply" else opset13.add)(
                out, kept(elt.input_value(1))).output(0)
        new_fq = opset13.fake_quantize(out, *[kept(fq.input_value(j)) for j in range(1, 5)], fq.get_levels())
        squeeze = opset13.squeeze(new_fq, opset13.constant(np.array(axes, np.int64)))
        squeeze.set_friendly_name(fq.get_friendly_name())
        fq.output(0).replace(squeeze.output(0))
        rewritten += 1
    if rewritten:
        ov_model.validate_nodes_and_infer_types()
    return rewritten


_GEMM_OPS = {"MatMul", "Convolution", "GroupConvolution", "ConvolutionBackpropData"}
_CONST_MATH = {"Multiply": "multiply", "Subtract": "subtract", "Add": "add"}


def _is_constant_chain(node) -> bool:
    """A Constant, or Convert/Subtract/Multiply/Add over constant chains only."""
    kind = node.get_type_name()
    return kind == "Constant" or (kind in ("Convert", *_CONST_MATH)
                                  and all(_is_constant_chain(v.get_node()) for v in node.input_values()))


def _has_convert(node) -> bool:
    kind = node.get_type_name()
    return kind == "Convert" or (kind in _CONST_MATH and any(_has_convert(v.get_node()) for v in node.input_values()))


def _constant_value(node):
    """float32 value of a constant chain (see ``_is_constant_chain``)."""
    import numpy as np

    kind = node.get_type_name()
    if kind == "Constant":
        return node.get_data()
    if kind == "Convert":
        return _constant_value(node.input_value(0).get_node()).astype(np.float32)
    a, b = (_constant_value(v.get_node()) for v in node.input_values())
    return getattr(np, _CONST_MATH[kind])(a, b).astype(np.float32)


def fold_elementwise_decompression(ov_model) -> int:
    """Fold quantized constants that feed element-wise ops (not a GEMM) into plain f32 constants.

    ``ov.convert_model`` turns a FakeQuantize on a constant into an int8 constant with a
    Convert -> (Subtract) -> Multiply "decompression" chain, and keeps it unfolded. That is what
    int8 GEMM kernels want for their weights, but on an element-wise operand (NNCF's default
    placement quantizes LayerNorm's gamma) OpenVINO 2026.4's CPU TransposeSinking pass mis-broadcasts
    it and compilation fails (``Argument shapes are inconsistent`` after a transpose). Folding the
    chain computes the same f32 values, so outputs are unchanged. Returns the number of chains folded.
    """
    import openvino as ov
    from openvino import opset13

    folded = 0
    for node in reversed(ov_model.get_ordered_ops()):  # outermost op of a chain first
        if node.get_type_name() not in _CONST_MATH or node.get_output_element_type(0) != ov.Type.f32:
            continue
        consumers = [t.get_node() for t in node.output(0).get_target_inputs()]
        if (not consumers or any(c.get_type_name() in _GEMM_OPS or _is_constant_chain(c) for c in consumers)
                or not _is_constant_chain(node) or not _has_convert(node)):
            continue  # dead, a GEMM weight, inside a longer chain (folded with its outermost op), or not one
        constant = opset13.constant(_constant_value(node))
        constant.set_friendly_name(node.get_friendly_name())
        node.output(0).replace(constant.output(0))
        folded += 1
    if folded:
        ov_model.validate_nodes_and_infer_types()
    return folded


def set_metadata(ov_model, metadata: dict[str, Any]) -> dict[str, str]:
    """Store ``metadata`` (values JSON-encoded unless str) under ``rt_info["qmlp_nncf"]``."""
    stored = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    for k, v in stored.items():
        ov_model.set_rt_info(v, [RT_INFO_KEY, k])
    return stored


def read_metadata(xml_or_model) -> dict[str, str]:
    """The ``rt_info["qmlp_nncf"]`` block of an IR (path) or ``ov.Model``; {} if absent."""
    model = read_ir(xml_or_model) if isinstance(xml_or_model, (str, Path)) else xml_or_model
    if not model.has_rt_info([RT_INFO_KEY]):
        return {}
    return {k: v.astype(str) for k, v in model.get_rt_info()[RT_INFO_KEY].items()}


def target_dir(out_dir: str | Path, ovms_name: Optional[str] = None, ovms_version: int = 1) -> Path:
    """``out_dir``, or ``<out_dir>/<ovms_name>/<ovms_version>`` for an OVMS repository."""
    out_dir = Path(out_dir)
    if ovms_name is None:
        return out_dir
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", ovms_name):
        raise ExportError(f"OVMS model name {ovms_name!r} must be letters, digits, '_', '.' or '-'")
    if ovms_version < 1:
        raise ExportError(f"OVMS versions are positive integers, got {ovms_version}")
    return out_dir / ovms_name / str(ovms_version)


def check_target(target: Path, force: bool) -> Path:
    """``target`` if an IR may be written there (absent, or a folder and ``force``)."""
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} exists and is not a folder; remove it or choose another destination")
    if target.exists() and not force:
        raise ExportError(f"{target} already exists; pass --force (force=True) to replace it")
    return target


W4_KERNELS = ("int8", "i4")  # how a statically quantized IR runs its 4-bit GEMM weights (see int4_on_int8_kernels)


def check_w4_kernels(w4_kernels: str) -> None:
    if w4_kernels not in W4_KERNELS:
        raise ExportError(f"w4_kernels {w4_kernels!r}: choose int8 (4-bit weights on disk, int8 GEMM kernels) or "
                          f"i4 (OpenVINO's weight-decompression kernels)")


def export_ir(model: torch.nn.Module, out_dir: str | Path, input_shape: Sequence[int], *,
              dynamic_batch: bool = False, metadata: Optional[dict[str, Any]] = None,
              ovms_name: Optional[str] = None, ovms_version: int = 1, force: bool = False,
              measure: Optional[Callable[[Any], dict]] = None, w4_kernels: str = "int8") -> ExportResult:
    """Convert ``model`` and write ``model.xml``/``model.bin`` to ``out_dir`` atomically.

    ``input_shape`` includes the batch, e.g. ``(1, 3, 224, 224)``. With ``ovms_name``, ``out_dir`` is an
    OVMS model repository and the IR goes to ``<out_dir>/<ovms_name>/<ovms_version>/``. ``measure``
    gets the converted ``ov.Model`` before it is saved and returns extra metadata (e.g. its accuracy).
    Refuses to replace an existing target unless ``force``. ``w4_kernels``: see :func:`convert`.
    """
    import openvino as ov

    check_w4_kernels(w4_kernels)
    target = check_target(target_dir(out_dir, ovms_name, ovms_version), force)

    ov_model = convert(model, input_shape, dynamic_batch, w4_kernels)
    info = {"input_shape": [-1, *input_shape[1:]] if dynamic_batch else list(input_shape),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **versions(), **(metadata or {})}
    from ..quantization.openvino_model import four_bit_constants, is_statically_quantized

    if four_bit_constants(ov_model):  # how its 4-bit weights run: int8 kernels, or weight decompression
        info["w4_kernels"] = w4_kernels if is_statically_quantized(ov_model) else "i4 (weight-only)"
    if measure is not None:
        info.update(measure(ov_model))
    stored = set_metadata(ov_model, info)

    try:
        with staged_folder(target) as tmp:
            ov.save_model(ov_model, str(tmp / XML_NAME), compress_to_fp16=False)
    except OSError as e:
        raise ExportError(f"cannot write the IR to {target}: {e}") from e
    ovms = {"config": {"name": ovms_name, "base_path": str(target.parent)}} if ovms_name else None
    return ExportResult(target / XML_NAME, target / "model.bin", stored, ovms)
