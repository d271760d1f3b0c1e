"""Per-channel -> per-tensor reparameterization of norm outputs (RepQ-ViT, Li et al., ICCV 2023).

A LayerNorm's (or ResMLP's Affine) output that feeds only Linears often has channels whose ranges differ by
orders of magnitude; one per-tensor activation quantizer then spends its levels on a few channels. Per channel c,
with calibrated range ``[lo_c, hi_c]``, centre ``m_c`` and half-width ``h_c``, the norm's output is rewritten as
``x' = (x - m) / r`` with ``r_c = (h_c / mean(h)) ** strength`` (``strength`` 1: RepQ-ViT's full equalisation;
0.5 moves half the spread into the weights, SmoothQuant-like), and the change is folded into the parameters::

    norm:    gamma' = gamma / r          beta' = (beta - m) / r
    Linear:  W'     = W * r (columns)    b'    = b + W @ m

so the float function is unchanged (to rounding) and the exported IR is the same graph: no runtime cost. Only a
norm whose every consumer is a Linear reading it directly is folded; a norm read through a transpose (the
token-mixing branch: there the channel axis is the Linear's batch axis, and ``r`` cannot move into its weights)
is left as it is, and the report says so.
"""
from .common import Fold, ReparamReport
from .torch_backend import foldable_norms, reparameterize

__all__ = ["reparameterize", "foldable_norms", "Fold", "ReparamReport"]
