"""What this CPU's int8 and bf16 kernels can do, as data (read once from /proc/cpuinfo and OpenVINO).

Why it matters: without VNNI (AVX-512 VNNI, AVX-VNNI or AMX), OpenVINO's CPU int8 GEMMs take another
path (on AVX2, u8 x s8 products are summed in pairs into 16-bit lanes, which is what NNCF's 7-bit
``overflow_fix`` exists for; the ``qmlp_*`` recipes turn it off). Measured on an AVX2-only EPYC:
``qmlp_w8a8`` on ``resmlp_fmnist`` ran 1.2 pt lower in OpenVINO than the reference measured on a VNNI
machine (first 1000 test images); on a random Mixer-S/32 the int8 IR drifted from torch fake-quant by
3x the quantization error, and compiling with ``LP_TRANSFORMS_MODE: False`` (FakeQuantize run in f32)
brought it back to torch's; the float IRs matched torch to 1e-4. Half-range (7-bit) 8-bit weights, NNCF's
overflow fix (``QuantizerSpec.half_range``, recipe ``qmlp_w8a8_overflow_fix``), closed the gap: ``qmlp_w8a8`` on
``qmlp_mixer_fmnist`` ran 0.40 pt under torch in the IR (96.9 % top-1 agreement), the half-range recipe 0.01 pt
(99.8 %), full test set.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuCapabilities:
    flags: frozenset
    openvino: tuple  # CPU OPTIMIZATION_CAPABILITIES, e.g. ("FP32", "BF16", "INT8", ...)

    @property
    def vnni(self) -> bool:
        """int8 dot products accumulate in 32 bit (exact int8 GEMMs)."""
        return any(f in self.flags for f in VNNI_FLAGS)

    @property
    def bf16(self) -> bool:
        return "BF16" in self.openvino

    def int8_note(self) -> str:
        """One line for users when int8 IRs may run less exactly here ('' on VNNI CPUs)."""
        if self.vnni:
            return ""
        return ("note: this CPU has no VNNI (AVX-512 VNNI / AVX-VNNI / AMX): OpenVINO's int8 kernels here can "
                "saturate and drift from torch fake-quant; to deploy on such CPUs use half-range 8-bit weights "
                "(recipe qmlp_w8a8_overflow_fix, or \"half_range\": true in a recipe's weights)")


@functools.lru_cache(maxsize=1)
def cpu_capabilities() -> CpuCapabilities:
    flags: set = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    try:
        import openvino as ov

        caps = tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - capabilities are best effort
        caps = ()
    return CpuCapabilities(frozenset(flags), caps)


def int8_note(quantized: bool) -> str:
    """The note for users of this CPU's int8 kernels when a model is ``quantized`` ('' otherwise, or on VNNI)."""
    return cpu_capabilities().int8_note() if quantized else ""
