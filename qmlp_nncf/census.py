"""What the executed graph runs in float and what in int8: the evidence of quantizer fusion that holds on any CPU.

OpenVINO's CPU plugin folds a FakeQuantize it can fuse into its producer (an MVN, a FullyConnected or an
element-wise ``Subgraph`` with an int8 output) and runs the ops after it in int8; a FakeQuantize it cannot fuse
stays a standalone f32 ``Subgraph``, and the MVN / Concat / Transpose around it move f32 data. Counting the
executed layers by group and precision (and, from a profile, their time) tells one placement from another on an
AVX2, an AVX-512 VNNI or an AMX CPU alike, where wall-clock differences may be in the noise.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

# layer types of the executed graph (runtime model ``layerType`` or the profiler's ``node_type``) -> group
GROUPS = {"Subgraph": "element-wise", "Eltwise": "element-wise", "MVN": "MVN", "Concatenation": "Concat",
          "Concat": "Concat", "Transpose": "Transpose", "Split": "Split", "VariadicSplit": "Split"}
CENSUS_GROUPS = ("element-wise", "MVN", "Concat", "Transpose", "Split")
INT8 = {"i8", "u8"}


def precision_class(precision: str) -> str:
    """``int8`` (i8 / u8) or ``float`` (f32, bf16, f16, anything else)."""
    return "int8" if precision.lower() in INT8 else "float"


def census_of(layers: Iterable[tuple[str, str, float]]) -> dict:
    """``{group: {"float": {"n", "ms"}, "int8": {...}}}`` and ``total_ms`` from (layer type, precision, ms)."""
    n: Counter = Counter()
    ms: Counter = Counter()
    total = 0.0
    for layer_type, precision, t in layers:
        total += t
        group = GROUPS.get(layer_type)
        if group is not None:
            key = (group, precision_class(precision))
            n[key] += 1
            ms[key] += t
    out = {g: {c: {"n": n[(g, c)], "ms": round(ms[(g, c)], 4),
                   "share": round(ms[(g, c)] / total, 4) if total else 0.0} for c in ("float", "int8")}
           for g in CENSUS_GROUPS}
    return {"groups": out, "total_ms": round(total, 4)}


def executed_census(compiled) -> dict:
    """:func:`census_of` of a compiled model's executed graph, counts only (no timing needed)."""
    layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info:
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
            layers.append((info["layerType"].astype(str), precision, 0.0))
    return census_of(layers)


def float_counts(census: dict) -> dict[str, int]:
    """``{group: number of layers running in float}``: what a fusing placement drives down."""
    return {g: c["float"]["n"] for g, c in census["groups"].items()}


def markdown(labelled: list[tuple[str, dict]]) -> str:
    """One row per (group, precision class), one column per census: layers and time share."""
    head = " | ".join(f"{label} n / ms / share" for label, _ in labelled)
    lines = [f"| group | precision | {head} |", "|---|---|" + "---:|" * len(labelled)]
    for g in CENSUS_GROUPS:
        for c in ("float", "int8"):
            cells = [census["groups"][g][c] for _, census in labelled]
            if any(cell["n"] for cell in cells):
                lines.append(f"| {g} | {c} | " + " | ".join(
                    f"{cell['n']} / {cell['ms']:.2f} / {100 * cell['share']:.1f} %" for cell in cells) + " |")
    return "\n".join(lines)


def ir_census(model) -> dict:
    """``{"float": {group: n}, "int8": {group: n}}`` of the executed graph of ``model`` (an ``openvino.Model``),
    compiled for this machine's CPU with the f32 hint: the fusion evidence that reads the same on any CPU (a
    recipe's speed, without timing it). ``export.openvino_ir.quantized_census`` takes a quantized torch model."""
    import openvino as ov

    census = executed_census(ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}))
    return {"float": float_counts(census), "int8": {g: v["int8"]["n"] for g, v in census["groups"].items()}}


__all__ = ["census_of", "executed_census", "float_counts", "ir_census", "markdown", "precision_class", "GROUPS"]
