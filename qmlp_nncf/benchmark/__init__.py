"""Benchmarks: OpenVINO latency/throughput (``ov_latency``) and accuracy (``accuracy``); front ends in ``benchmarks/``."""
from ..census import executed_census, float_counts
from .ov_latency import BenchConfig, BenchmarkError, benchmark, machine_info, markdown, precision_census, run

__all__ = ["executed_census", "float_counts", "BenchConfig", "BenchmarkError", "benchmark", "machine_info", "markdown", "precision_census", "run"]
