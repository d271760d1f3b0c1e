"""4-bit weights in an OpenVINO IR: count them, tell static from weight-only quantization, and let a static
model's 4-bit GEMM weights run on int8 kernels (used by the export and by the OpenVINO-backend post-pass)."""
from __future__ import annotations


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
