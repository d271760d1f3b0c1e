"""Quantization-aware training: fine-tune an NNCF-quantized model, distilling from its float model.

NNCF 3 has no QAT algorithm object any more: the model ``nncf.quantize`` returns is trained like any
torch model (quantizer scales and ranges are parameters too). This reuses the float training loop
(AdamW, cosine, torchrun DDP, resumable checkpoints that carry ``nncf_config``).
"""
from __future__ import annotations

import torch

from ..training import TrainConfig, train


def qat(quantized: torch.nn.Module, cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Fine-tune ``quantized`` in place per ``cfg`` (``cfg.teacher``: the float checkpoint to distil from).

    bf16 autocast is off: NNCF's fake-quant kernels run in float32.
    """
    if cfg.amp != "off":
        raise ValueError("QAT runs NNCF fake-quant in float32: set amp='off'")
    return train(cfg, resume=resume, log=log, model=quantized.train())
