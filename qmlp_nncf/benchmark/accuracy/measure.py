"""One measurement: sizes of a quantized model, its torch fake-quant and OpenVINO IR top-1, and QAT."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import Dataset

from ...training.qat import QATSettings
from .models import BenchModel, Log


def weight_bits(quantized: torch.nn.Module) -> dict[str, int]:
    """``{parameter name: bits}`` of every quantized weight of an NNCF model.

    Covers ``nncf.quantize`` weight quantizers (pre-hooks on port 1 of a Linear/Conv, named
    ``pre_hooks.<module/path>/<op>/<call>__1.<i>``) and ``nncf.compress_weights`` decompressors
    (``post_hooks.<module:path>:weight__0.<i>``, class ``INT4...``/``INT8...``).
    """
    from nncf.torch.function_hook import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer

    bits = {}
    for name, hook in get_hook_storage(quantized).named_hooks():
        if isinstance(hook, BaseQuantizer):
            m = re.fullmatch(r"pre_hooks\.(?P<op>.+)__1\.\d+", name)
            if m and m["op"].count("/") >= 2:
                bits[".".join(m["op"].split("/")[:-2]) + ".weight"] = int(hook.num_bits)
            continue
        m = re.fullmatch(r"post_hooks\.(?P<param>.+)__0\.\d+", name)
        width = re.match(r"INT(\d+)", type(hook).__name__)
        if m and width:
            bits[m["param"].replace(":", ".")] = int(width[1])
    return bits


def analytic_mb(float_model: torch.nn.Module, bits: dict[str, int]) -> float:
    """Bits x parameters: quantized weights at their bits, every other parameter at 32 bit; in MiB."""
    total = sum(p.numel() * bits.get(name, 32) for name, p in float_model.named_parameters())
    return total / 8 / 2**20


def run_qat(quantized: torch.nn.Module, model: BenchModel, arch: str, out_dir: Path, settings: QATSettings,
            data_dir: Optional[str], log: Log, data: Optional[dict] = None, seed: int = 0) -> torch.nn.Module:
    """Fine-tune a PTQ model in place with ``qmlp_nncf.training.qat``, distilling from the float
    checkpoint (``seed``: the training draw); the run folder (``last.pth``/``model.pth``) goes to ``out_dir``."""
    from ...training.qat import qat

    cfg = settings.train_config(arch, str(out_dir), model.teacher(), data_dir=data_dir, data=data or {}, seed=seed)
    qat(quantized, cfg, log=log)
    return quantized.eval()


def measure_quantized(quantized: torch.nn.Module, float_model: torch.nn.Module, test: Dataset, float_top1: float,
                      ir_dir: Optional[Path] = None, metadata: Optional[dict] = None, progress: bool = False,
                      input_shape: Optional[tuple] = None) -> dict:
    """Torch fake-quant top-1, and (with ``ir_dir``) the IR's top-1, agreement and ``.bin`` size."""
    from ...evaluation import evaluate

    bits = weight_bits(quantized)
    out = {"analytic_mb": analytic_mb(float_model, bits), "quantized_weights": len(bits)}
    if ir_dir is None:
        out["torch_top1"] = evaluate(quantized, test, progress=progress, desc="eval torch")["top1"]
    else:
        from ...export import export_ir, torch_ir_agreement
        from ...sources import model_input_size

        shape = tuple(input_shape or model_input_size(float_model))
        result = export_ir(quantized, ir_dir, (1, *shape), force=True, metadata=metadata)
        m = torch_ir_agreement(quantized, result.xml, test, progress=progress)
        out.update(torch_top1=m["torch_top1"], ir_top1=m["ir_top1"], agreement=m["agreement"],
                   ir_mb=result.bin.stat().st_size / 2**20,
                   delta_ir_pt=100 * (m["ir_top1"] - float_top1), ir_vs_torch_pt=100 * (m["ir_top1"] - m["torch_top1"]))
    out["delta_torch_pt"] = 100 * (out["torch_top1"] - float_top1)
    return out
