"""Benchmarks: OpenVINO latency/throughput (``ov_latency``) and accuracy (``accuracy``); front ends in ``benchmarks/``."""
from .ov_latency import BenchConfig, BenchmarkError, benchmark, machine_info, markdown, precision_census, run

__all__ = ["BenchConfig", "BenchmarkError", "benchmark", "machine_info", "markdown", "precision_census", "run"]
