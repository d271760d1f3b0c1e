"""Quantization-aware training: fine-tune an NNCF-quantized model, distilling from its float model.

NNCF 3 has no QAT algorithm object any more: the model ``nncf.quantize`` returns is trained like any
torch model (quantizer scales and ranges are parameters too). This reuses the float training loop
(AdamW, cosine, torchrun DDP, resumable checkpoints that carry ``nncf_config``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..quantization.algorithms.zero_grid import align_zero_points
from . import TrainConfig, train


@dataclass(frozen=True)
class QATSettings:
    """The QAT knobs and their defaults (``qmlp qat`` and ``benchmarks/accuracy.py --qat``)."""

    epochs: int = 2
    lr: float = 5e-5
    warmup_epochs: float = 0.1
    batch_size: int = 128
    distill_weight: float = 0.7
    train_subset: int = 0  # >0: the first N shuffled train images per epoch

    def __post_init__(self):  # fail at the command line, not after the PTQ run that precedes QAT
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.train_subset < 0:
            raise ValueError(f"QAT epochs ({self.epochs}), batch size ({self.batch_size}) and lr ({self.lr:g}) must be "
                             f"positive, train subset ({self.train_subset}) >= 0")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"QAT distill weight must be in [0, 1], got {self.distill_weight:g}")

    def train_config(self, arch: str, out: str, teacher: Optional[str], **extra) -> TrainConfig:
        """The training-loop config: no weight decay on quantizer ranges, float32 (fake-quant kernels)."""
        return TrainConfig(model=arch, out=out, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           warmup_epochs=self.warmup_epochs, weight_decay=0.0, amp="off",
                           train_subset=self.train_subset, teacher=teacher, distill_weight=self.distill_weight,
                           **extra)


def qat(quantized: torch.nn.Module, cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Fine-tune ``quantized`` in place per ``cfg`` (``cfg.teacher``: the float checkpoint to distil from).

    bf16 autocast is off: NNCF's fake-quant kernels run in float32.
    """
    if cfg.amp != "off":
        raise ValueError("QAT runs NNCF fake-quant in float32: set amp='off'")
    result = train(cfg, resume=resume, log=log, model=quantized.train())
    align_zero_points(quantized)  # training moved the ranges: keep the model computing what its IR computes
    return result


@dataclass(frozen=True)
class QATInputs:
    """What a ``qmlp quantize`` checkpoint and the options say about its QAT run, read before any model is built."""

    meta: dict  # the checkpoint's keys (arch, recipe, data, model_source...), weights included
    teacher: Optional[str]  # the float checkpoint to distil from
    options: dict  # epochs, lr, batch_size, seed, workers: as given, else an NNCF 2.x config's, else the defaults


def qat_inputs(checkpoint: str, teacher: Optional[str] = None, config: Optional[str] = None,
               **given: Optional[float]) -> QATInputs:
    """Check that ``checkpoint`` is quantized; the teacher (given, else the model it was quantized from; a zoo name
    becomes its checkpoint) and the training options (``given`` values that are not None win over the ``config``'s
    ``epochs`` / ``batch_size`` / ``optimizer.base_lr`` / ``seed`` / ``workers``, which win over the defaults)."""
    from ..checkpoint import read_checkpoint

    meta = read_checkpoint(checkpoint)
    if "nncf_config" not in meta:
        raise ValueError(f"{checkpoint} is not quantized: make one with `qmlp quantize`")
    training = {}
    if config:
        from ..quantization.recipes.config import load_config

        training = load_config(config).training
    d = QATSettings()
    defaults = {"epochs": d.epochs, "lr": d.lr, "batch_size": d.batch_size, "seed": 0, "workers": -1}
    options = {key: given[key] if given.get(key) is not None else training.get(key, default)
               for key, default in defaults.items()}
    teacher = teacher or meta.get("model_source") or meta.get("source")
    if isinstance(teacher, str) and not Path(teacher).is_file():
        from ..zoo import get_entry

        teacher = str(get_entry(teacher).checkpoint)
    return QATInputs(meta, teacher, options)
