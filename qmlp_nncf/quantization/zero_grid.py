"""Zero on the grid of every asymmetric NNCF quantizer, so the torch model computes what its IR computes.

NNCF's asymmetric quantizer "tunes" its range so that 0.0 is a grid point (``TuneRange``), but where the zero point
rounds to an end of the grid (``round(-low / step)`` is 0 or ``levels - 1``: a range that reaches just below zero,
as a GELU output's does at 4 bit) it leaves the range as it is. Its torch forward then rounds at thresholds
shifted by ``low`` (up to half a step), while the exported FakeQuantize uses the integer zero point, i.e. the window
``[-zp * step, (levels - 1 - zp) * step]``. Measured on the zoo ResMLP at W4A4: 12 % of each GELU quantizer's
outputs one step apart, torch and IR agreeing on 92 % of the images. :func:`align_zero_points` moves such a
window onto the grid the IR uses (same step, zero point kept), so both compute the same numbers; everywhere else it
changes nothing. ``export.openvino_ir`` does the converse for a model that was not aligned (a checkpoint from
before): it gives the IR's FakeQuantize torch's thresholds.
"""
from __future__ import annotations

import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import AsymmetricQuantizer
from nncf.torch.quantization.quantize_functions import TuneRange


@torch.no_grad()
def align_zero_points(model: torch.nn.Module) -> int:
    """Put each asymmetric quantizer's window on the grid its export uses (see the module doc); returns how many
    quantizers moved."""
    moved = 0
    seen = set()
    for _, hook in get_hook_storage(model).named_hooks():
        if (not isinstance(hook, AsymmetricQuantizer) or id(hook) in seen or hook.is_half_range
                or not hook.is_enabled_quantization()):
            continue
        seen.add(id(hook))
        levels = hook.levels
        low, width = TuneRange.apply(hook.input_low.detach(), hook.input_range.detach().abs() + hook.eps, levels)
        step = width / (levels - 1)
        zero = (-low / step).round().clamp(0, levels - 1)
        aligned = -zero * step
        if torch.allclose(aligned, low, rtol=0, atol=1e-6 * float(step.abs().max())):
            continue
        hook.input_low.copy_(aligned.reshape(hook.input_low.shape))
        hook.input_range.copy_((width - hook.eps).reshape(hook.input_range.shape))
        moved += 1
    return moved
