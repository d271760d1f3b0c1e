"""OpenVINO benchmarks (``benchmarks/ov_latency.py`` is the command-line front end)."""
from .ov_latency import BenchConfig, BenchmarkError, benchmark, machine_info, markdown, precision_census, run

__all__ = ["BenchConfig", "BenchmarkError", "benchmark", "machine_info", "markdown", "precision_census", "run"]
