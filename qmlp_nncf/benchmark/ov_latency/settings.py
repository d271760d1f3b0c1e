"""What ``ov_latency`` measures: devices, hints, modes, the run's settings (``BenchConfig``) and one IR (``IRSource``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...census import INT8

DEVICES = ("CPU", "GPU", "AUTO")
HINTS = ("f32", "bf16")
GEMM_TYPES = ("FullyConnected", "MatMul")  # the int8_share / i4_share count these
CENSUS_TYPES = GEMM_TYPES + ("Convolution",)
INT8_PRECISIONS = tuple(sorted(INT8))  # int8 GEMM kernels
INT4_PRECISIONS = ("i4", "u4")  # 4-bit weights through the weight-decompression kernels
FP32 = "fp32"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


class BenchmarkError(ValueError):
    """Bad input (path, device, model, recipe); the message says what to change."""


@dataclass
class BenchConfig:
    """What to measure and for how long (per measurement)."""
    devices: list[str] = field(default_factory=list)  # empty: every present device among DEVICES
    hints: list[str] = field(default_factory=lambda: list(HINTS))
    batch: int = 16  # throughput-mode batch
    duration_s: float = 10.0  # per measurement, after warm-up
    iterations: int = 0  # > 0: fixed request count instead of duration
    warmup: int = 3  # requests (per infer request in throughput mode)
    calibration_size: int = 64  # for recipes built on the fly (speed only)
    quick: bool = False
    data: dict = field(default_factory=dict)  # sources.DataSource.to_json() to calibrate on; {}: see random_calibration
    random_calibration: bool = False  # calibrate on random images (speed only); else --data, or Fashion-MNIST
    model_kwargs: dict = field(default_factory=dict)  # timm kwargs for every --model
    # how the 4-bit weights of W4A8/W4A4 IRs built on the fly run (export.openvino_ir.W4_KERNELS); each is a row
    w4_kernels: list[str] = field(default_factory=lambda: ["int8"])
    repeats: int = 1  # every measurement this many times, the IRs taking turns; rows give the median and range
    versus: str = ""  # a recipe: speedup_vs_ref = this row against that recipe's row of the same model (per repeat)
    cross_check: bool = False  # also run OpenVINO's benchmark_app on every measurement, right after ours

    def __post_init__(self):
        if self.quick:
            self.duration_s, self.warmup, self.calibration_size = min(self.duration_s, 0.5), 1, 8
        bad = [h for h in self.hints if h not in HINTS]
        if bad:
            raise BenchmarkError(f"unknown precision hint(s) {bad}; choose from {', '.join(HINTS)}")
        if self.batch < 1:
            raise BenchmarkError(f"--batch must be >= 1, got {self.batch}")
        if self.repeats < 1:
            raise BenchmarkError(f"--repeats must be >= 1, got {self.repeats}")
        from ...export.openvino_ir import W4_KERNELS

        bad = [k for k in self.w4_kernels if k not in W4_KERNELS] or ([] if self.w4_kernels else ["(none)"])
        if bad:
            raise BenchmarkError(f"unknown --w4-kernels {bad}; choose from {', '.join(W4_KERNELS)}")


@dataclass
class IRSource:
    """One IR to benchmark, with the model/recipe it came from."""
    xml: Path
    model: str
    recipe: str
    note: str = ""

