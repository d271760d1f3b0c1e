"""The machine and its OpenVINO devices: what is present, what each supports, compiling an IR for a measurement,
and the runtime precision census of a compiled model."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Optional

from .settings import (CENSUS_TYPES, CPU_FLAGS, DEVICES, GEMM_TYPES, INT4_PRECISIONS, INT8_PRECISIONS, BenchmarkError,
                       IRSource)


def machine_info() -> dict:
    """CPU model, ISA flags relevant to int8/bf16, cores, load, OpenVINO version and devices."""
    import openvino as ov

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model_name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                       if line.startswith("model name")), "unknown")
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                      if line.startswith("flags")), []))
    core = ov.Core()
    return {
        "cpu": model_name,
        "flags": {f: f in flags for f in CPU_FLAGS},
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "openvino": ov.get_version(),
        "devices": {d: core.get_property(d, "FULL_DEVICE_NAME") for d in core.available_devices},
    }


def _present(device: str, available: list[str]) -> bool:
    if device.startswith("AUTO") or device.startswith("MULTI"):
        return bool(available)
    return any(a == device or a.split(".")[0] == device for a in available)


GPU_HELP = ("An Intel GPU needs its OpenVINO driver (intel-opencl-icd / Level Zero) and must appear in "
            "`python -c \"import openvino as ov; print(ov.Core().available_devices)\"`; on this machine use --device CPU")


def resolve_devices(requested: list[str], available: list[str]) -> tuple[list[str], list[str]]:
    """(devices to use, notes). Every device asked for by name must be present: a run that silently measured
    another device (or none) would report numbers for hardware the user did not ask about."""
    absent = [d for d in requested if not _present(d, available)]
    if absent:
        gpu = " " + GPU_HELP if any(d.split(".")[0] == "GPU" for d in absent) else ""
        raise BenchmarkError(f"device {', '.join(absent)} is not present: OpenVINO sees "
                             f"{', '.join(available) or 'no device'}.{gpu}")
    use = requested or [d for d in DEVICES if _present(d, available)]
    if not use:
        raise BenchmarkError("OpenVINO sees no device")
    return use, []


def int8_supported(core, device: str) -> bool:
    """Whether the device lists INT8 in ``OPTIMIZATION_CAPABILITIES`` (AUTO: its CPU). Intel iGPUs do from
    Gen12 (Xe) on with DP4A; without it OpenVINO runs an int8 IR's FakeQuantize in f16."""
    target = "CPU" if device.startswith("AUTO") else device
    try:
        return "INT8" in core.get_property(target, "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


def hint_supported(core, device: str, hint: str) -> bool:
    """f32 everywhere; bf16 only where the device lists BF16 (AUTO: its CPU)."""
    if hint == "f32":
        return True
    target = "CPU" if device.startswith("AUTO") else device
    try:
        caps = core.get_property(target, "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False
    return hint.upper() in caps



def compile_ir(core, src: IRSource, device: str, hint: str, mode: str, batch: int, extra: Optional[dict] = None):
    """The IR reshaped to ``batch`` and compiled with the mode's performance hint, the precision hint and
    ``extra`` properties (e.g. ``PERF_COUNT``)."""
    from ...export import load_ir

    model = load_ir(src.xml)
    shape = model.inputs[0].get_partial_shape()
    try:
        model.reshape([batch, *[d.get_length() for d in list(shape)[1:]]])
    except RuntimeError as e:
        raise BenchmarkError(f"{src.xml} cannot be reshaped to batch {batch} ({str(e).splitlines()[0]}); "
                             f"export it with --dynamic-batch") from e
    return core.compile_model(model, device, {"PERFORMANCE_HINT": mode.upper(), "INFERENCE_PRECISION_HINT": hint,
                                              **(extra or {})})


def precision_census(compiled) -> dict:
    """Runtime precision of every FullyConnected/MatMul/Convolution in the executed graph.

    ``census`` counts the ``runtimePrecision`` the CPU plugin reports per layer type (``u8``/``i8`` for int8
    activations or int8-compressed weights, ``i4``/``u4`` for 4-bit weights). What the GEMM computes in is the
    suffix of its ``primitiveType`` (``jit_gemm_I8``, ``brgemm_avx2_f32``): ``int8_share`` is the share of GEMMs
    that compute in int8; ``i4_share`` the share that run 4-bit weights through the weight-decompression kernels;
    ``float_compute_share`` the share that compute in a float type (weight-only compression included)."""
    counts: Counter = Counter()
    compute: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else None
        if layer in CENSUS_TYPES:
            prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "unknown"
            counts[(layer, prec)] += 1
            if layer in GEMM_TYPES:
                kernel = info["primitiveType"].astype(str) if "primitiveType" in info else ""
                suffix = kernel.rsplit("_", 1)[-1].lower()
                compute["int8" if suffix in INT8_PRECISIONS or (not kernel and prec in INT8_PRECISIONS)
                        else "i4" if prec in INT4_PRECISIONS else "float"] += 1
    census: dict[str, dict[str, int]] = {}
    for (layer, prec), n in sorted(counts.items()):
        census.setdefault(layer, {})[prec] = n
    gemms = sum(compute.values())

    def share(kind: str) -> Optional[float]:
        return compute[kind] / gemms if gemms else None

    return {"census": census, "gemm_ops": gemms, "int8_share": share("int8"), "i4_share": share("i4"),
            "float_compute_share": share("float")}


def error_summary(error: Exception, limit: int = 300) -> str:
    """An OpenVINO error without its source-location lines: what failed, then the final reason."""
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip() and not line.strip().startswith("Exception from")]
    if not lines:
        return type(error).__name__
    head = lines[0] if len(lines[0]) <= limit else lines[0][:limit] + "..."
    return head if len(lines) == 1 else f"{head} ... {lines[-1][:limit]}"


def execution_devices(compiled) -> list[str]:
    try:
        return list(compiled.get_property("EXECUTION_DEVICES"))
    except RuntimeError:
        return []

