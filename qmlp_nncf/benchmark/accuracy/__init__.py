"""Accuracy benchmark: every zoo model x every recipe (x seed), PTQ top-1 in torch fake-quant and as an
OpenVINO IR, shaped like NNCF's conformance harness:

- ``models``: what runs (zoo entries or any checkpoint, the recipes, the plan);
- ``measure``: one measurement (sizes, torch and IR top-1, QAT);
- ``runner``: every model x recipe x seed, then the summary (mean and sd over seeds) checked against
- ``targets``: the targets, kept as data in ``benchmarks/reference_accuracy.json`` beside
- ``reference``: the reference numbers (load, compare, update);
- ``report``: the Markdown table; ``ablation``: one rule removed at a time; ``command``: the script's flags.

For each model: the float top-1 (zoo reference, and re-measured on the same test images). For each
model x recipe: PTQ wall time, top-1 of the NNCF fake-quant model, top-1 of its exported IR (true
FP32 execution, ``INFERENCE_PRECISION_HINT=f32``) and the torch/IR top-1 agreement, deltas vs float
in points, and the model size (IR ``.bin`` bytes; analytic: weights at their quantized bits, every
other parameter at 32 bit, quantization scales not counted).
"""
from ...training.qat import QATSettings
from .ablation import ablate, ablation_variants, describe_rule
from .command import build_parser, main
from .measure import analytic_mb, measure_quantized, run_qat, weight_bits
from .models import (AUTO_PLACEHOLDER, AccuracyError, BenchModel, check_recipes, is_baseline, load_float, mismatched,
                     plan, test_set, zoo_models)
from .reference import REFERENCE, compare_reference, load_reference, update_reference
from .report import ablation_markdown, markdown
from .runner import AccuracyConfig, merge, run, summarize
from .targets import Targets, auto_vs_hand, claims, load_targets, margins, targets_met

__all__ = ["QATSettings", "ablate", "ablation_variants", "describe_rule", "build_parser", "main", "analytic_mb",
           "measure_quantized", "run_qat", "weight_bits", "AUTO_PLACEHOLDER", "AccuracyError", "BenchModel",
           "check_recipes", "is_baseline", "load_float", "mismatched", "plan", "test_set", "zoo_models", "REFERENCE",
           "compare_reference", "load_reference", "update_reference", "ablation_markdown", "markdown",
           "AccuracyConfig", "merge", "run", "summarize", "Targets", "auto_vs_hand", "claims", "load_targets", "margins",
           "targets_met"]
