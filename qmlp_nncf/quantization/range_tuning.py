"""Range tuning: fit all quantizer ranges jointly by distilling the float model on the calibration inputs.

Statistics set each range on its own; at 4 bit the errors of some fifty quantizers compound. NNCF's
quantizers learn their ranges (LSQ-style gradients of ``scale`` / ``input_low`` / ``input_range``), so a
short Adam run on the calibration inputs fits them to the float model's logits: no labels, and weights,
biases and norms stay frozen, so it remains post-training quantization. NNCF 3.4's ``nncf.quantize``
has no such step (its bias corrections move biases, not ranges), hence this module.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import BaseQuantizer

from .specs import SpecError, check_keys, check_type

TEACHER_BATCH = 256  # items per forward when computing the float model's logits and the KL


@dataclass(frozen=True)
class RangeTuning:
    """The knobs of :func:`tune_ranges` (recipe key ``range_tuning``)."""

    steps: int = 300
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "RangeTuning":
        check_keys(d, {"steps", "lr", "batch_size", "seed"}, where)
        for key, typ in (("steps", int), ("batch_size", int), ("seed", int), ("lr", (int, float))):
            if key in d:
                check_type(d[key], typ, f"{where}.{key}")
        for key in ("steps", "batch_size", "lr"):
            if key in d and not d[key] > 0:
                raise SpecError(f"{where}.{key}: must be > 0, got {d[key]!r}")
        return cls(**d)


def range_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable range parameters of every NNCF quantizer in ``model``."""
    quantizers = [h for _, h in get_hook_storage(model).named_hooks() if isinstance(h, BaseQuantizer)]
    return [p for q in quantizers for p in q.parameters() if p.is_floating_point()]


def _log_probs(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.log_softmax(model(inputs[i:i + TEACHER_BATCH]), -1)
                      for i in range(0, len(inputs), TEACHER_BATCH)])


def _kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean")


def tune_ranges(quantized: torch.nn.Module, teacher: torch.nn.Module, items: list[torch.Tensor],
                settings: RangeTuning = RangeTuning(), log=print) -> dict:
    """Fit the quantizer ranges of ``quantized`` (in place) to ``teacher``'s logits on ``items``.

    Minimises KL(teacher || quantized) with Adam and a cosine schedule; every other parameter is
    frozen for the run and left as it was. Returns the mean KL on ``items`` before and after, and the time.
    """
    params = range_parameters(quantized)
    if not params:
        raise ValueError("range tuning: the model has no quantizers with trainable ranges")
    tuned = {id(p) for p in params}
    others = [p for p in quantized.parameters() if id(p) not in tuned]
    grad_flags = [p.requires_grad for p in params + others]
    was_training = quantized.training
    quantized.eval()
    t0 = time.time()
    inputs = torch.cat(items)
    with torch.no_grad():
        targets = _log_probs(teacher.eval(), inputs)
        kl_before = float(_kl(_log_probs(quantized, inputs), targets))
    try:
        for p in others:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=settings.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
        gen = torch.Generator().manual_seed(settings.seed)
        for step in range(settings.steps):
            idx = torch.randint(0, len(inputs), (min(settings.batch_size, len(inputs)),), generator=gen)
            loss = _kl(F.log_softmax(quantized(inputs[idx]), -1), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            if (step + 1) % 100 == 0:
                log(f"range tuning: step {step + 1}/{settings.steps}, KL {loss.item():.4f}")
        with torch.no_grad():
            kl_after = float(_kl(_log_probs(quantized, inputs), targets))
    finally:
        for p, flag in zip(params + others, grad_flags):
            p.requires_grad_(flag)
        quantized.train(was_training)
    return {"kl_before": kl_before, "kl_after": kl_after, "seconds": round(time.time() - t0, 1),
            "steps": settings.steps, "items": len(inputs)}
