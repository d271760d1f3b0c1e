"""OpenVINO latency/throughput benchmark of float, int8 and int4 IRs, with a runtime precision census.

Every IR runs on every requested device and precision hint in two modes: ``latency`` (batch 1,
synchronous requests, ``PERFORMANCE_HINT=LATENCY``) and ``throughput`` (batch N, ``AsyncInferQueue``
with OpenVINO's optimal number of requests, ``PERFORMANCE_HINT=THROUGHPUT``). Speedups are against
the f32-hint float IR of the same model, device, batch and mode, measured in the same run (the
CPU runs "FP32" IRs in bf16 by default, so ``f32`` is always measured for float IRs).

Modules: ``settings`` (BenchConfig, IRSource, the device/hint names), ``device`` (the machine, device support,
compiling, the precision census), ``measure`` (latency, throughput, benchmark_app), ``build`` (the IRs: given or
built from model x recipe), ``session`` (plan, measure in turns, speedups; ``benchmark``), ``report`` (the table),
``command`` (``benchmarks/ov_latency.py``).
"""
from .build import build_sources, ir_source
from .command import build_parser, main
from .device import (compile_ir, hint_supported, int8_supported, machine_info, precision_census,
                     resolve_devices)
from .measure import benchmark_app, measure_latency, measure_throughput
from .report import markdown
from .session import add_speedups, benchmark, plan, run
from .settings import DEVICES, FP32, HINTS, BenchConfig, BenchmarkError, IRSource

__all__ = ["BenchConfig", "BenchmarkError", "DEVICES", "FP32", "HINTS", "IRSource", "add_speedups", "benchmark",
           "benchmark_app", "build_parser", "build_sources", "compile_ir", "hint_supported", "int8_supported",
           "ir_source", "machine_info", "main", "markdown", "measure_latency", "measure_throughput", "plan",
           "precision_census", "resolve_devices", "run"]
