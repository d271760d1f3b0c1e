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

from typing import Optional

import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import AsymmetricQuantizer
from nncf.torch.quantization.quantize_functions import TuneRange


@torch.no_grad()
def off_grid_window(quantizer) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(low, width, exported_low)`` of an enabled, full-range asymmetric quantizer whose zero is off its grid
    (``low`` / ``width``: what its torch forward uses; ``exported_low = -zp * step``: where the export's window
    starts, same width); None for any other quantizer."""
    if (not isinstance(quantizer, AsymmetricQuantizer) or quantizer.is_half_range
            or not quantizer.is_enabled_quantization()):
        return None
    levels = quantizer.levels
    low, width = TuneRange.apply(quantizer.input_low.detach(), quantizer.input_range.detach().abs() + quantizer.eps,
                                 levels)
    step = width / (levels - 1)
    exported = -(-low / step).round().clamp(0, levels - 1) * step
    if torch.allclose(exported, low, rtol=0, atol=1e-4 * float(step.abs().min())):
        return None
    return low, width, exported


@torch.no_grad()
def align_zero_points(model: torch.nn.Module) -> int:
    """Put each asymmetric quantizer's window on the grid its export uses (see the module doc); returns how many
    quantizers moved."""
    moved = 0
    seen = set()
    for _, hook in get_hook_storage(model).named_hooks():
        window = None if id(hook) in seen else off_grid_window(hook)
        seen.add(id(hook))
        if window is None:
            continue
        _, width, exported = window
        hook.input_low.copy_(exported.reshape(hook.input_low.shape))
        hook.input_range.copy_((width - hook.eps).reshape(hook.input_range.shape))
        moved += 1
    return moved
