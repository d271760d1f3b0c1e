"""The backend-neutral part of weight error correction (see the package doc): the sums over calibration rows, the
ridge solve, GPTQ rounding on a grid given as a function, and the relative output error. Both backends feed it
rows of ``X_q`` / ``X_f`` / ``Y_f`` as torch tensors and write back what it returns."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ...recipes.knobs import ErrorCorrection
from ...rules.specs import SpecError

MIN_ROWS_PER_INPUT = 8  # calibration rows per input feature a Linear needs to be corrected (else it is left as is)
ITEMS_PER_ROWS = 1.5  # default items: each Linear reads >= 1.5 x `rows` rows to draw from


@dataclass
class Stats:
    """Sums over the calibration rows kept for one Linear (``X`` = its input with a ones column, ``Y_f`` = the
    float Linear's output): ``h = X_q^T X_q``; ``rhs = X_q^T Y_f`` (the solve's right-hand side, gathered as
    ``X_q^T X_f`` times the float ``[W^T; b]`` where the input is narrower than the output); ``reference =
    ||Y_f||^2`` on the rows kept; ``rows``: the rows read (before any were left out)."""

    h: torch.Tensor
    rhs: torch.Tensor
    reference: float
    rows: int


def augment(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.float(), torch.ones(len(x), 1)], 1)


def ridge(theta: torch.Tensor, h: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """``argmin ||Y_f - X_q theta'||^2 + lambda ||theta' - theta||^2`` (bias row not penalised)."""
    n = h.shape[0] - 1
    reg = torch.zeros_like(h)
    reg.diagonal()[:n] = ridge * h.diagonal()[:n].mean()
    return torch.linalg.solve(h + reg, rhs + reg @ theta)


def gptq(weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, round_column: Callable, damp: float,
         block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ on ``[W b]`` (out x in+1): the W columns rounded by ``round_column`` (one column of out values onto the
    weight quantizer's per-output-channel grid), the bias column kept in float and absorbing the error left."""
    w = torch.cat([weight.double(), bias.double()[:, None]], 1)
    n = weight.shape[1]
    h = h.clone()
    dead = h.diagonal()[:n] == 0
    h[:n, :n][dead, dead] = 1.0
    w[:, :n][:, dead] = 0.0
    h.diagonal()[:n] += damp * h.diagonal()[:n].mean()
    h.diagonal()[n] += 1e-8 * h.diagonal()[:n].mean()
    try:
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    except torch.linalg.LinAlgError:
        raise SpecError("error_correction: the input Hessian of a Linear is not positive definite even with "
                        "damping; raise error_correction.damp") from None

    q = round_column
    for i0 in range(0, n, block):
        i1 = min(i0 + block, n)
        wb, err = w[:, i0:i1].clone(), torch.zeros(w.shape[0], i1 - i0, dtype=torch.float64)
        hb = hinv[i0:i1, i0:i1]
        for j in range(i1 - i0):
            col = wb[:, j]
            qcol = q(col)
            e = (col - qcol) / hb[j, j]
            wb[:, j:] -= e[:, None] * hb[j, j:][None, :]
            wb[:, j] = qcol
            err[:, j] = e
        w[:, i0:i1] = wb
        w[:, i1:] -= err @ hinv[i0:i1, i1:]
    return w[:, :n], w[:, n]


def rows_kept(rows: int, total: float, inputs: int, knobs: ErrorCorrection, generator) -> Optional[torch.Tensor]:
    """Indices of the rows of one batch to keep (about ``knobs.rows`` over all batches), or None for all."""
    if knobs.rows is None:
        return None
    wanted = max(knobs.rows, MIN_ROWS_PER_INPUT * inputs)  # never too few for a solve
    keep = min(rows, math.ceil(rows * wanted / total))
    return None if keep >= rows else torch.randperm(rows, generator=generator)[:keep]


def float_side(xf: torch.Tensor, yf: torch.Tensor, rows: Optional[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """What the sums need of the float Linear's rows kept: ``[X_f 1]`` or ``Y_f``, whichever is narrower (the
    cross term's width), and ``||Y_f||^2``."""
    if rows is not None:
        xf, yf = xf[rows], yf[rows]
    return (augment(xf) if xf.shape[1] + 1 <= yf.shape[1] else yf.float()), float(yf.double().square().sum())


def batch_sums(xq: torch.Tensor, operand: torch.Tensor, reference: float, read: int) -> list:
    """One batch's share of ``Stats`` (f32 products, summed in f64)."""
    xq = augment(xq)
    return [(xq.T @ xq).double(), (xq.T @ operand).double(), reference, read]


def finish_sums(sums: list, float_theta: torch.Tensor) -> Stats:
    """The summed batches as :class:`Stats`; ``float_theta``: the float Linear's ``[W^T; b]`` (float64)."""
    h, cross, reference, rows = sums
    if cross.shape[1] == h.shape[0]:  # X_q^T X_f: times the float [W^T; b]
        cross = cross @ float_theta
    return Stats(h, cross, reference, rows)


def relative_error(theta: torch.Tensor, stats: Stats, quantize: Callable) -> float:
    """``||Y_f - [X_q 1] Q(theta)|| / ||Y_f||`` on the rows kept, from the sums alone; ``quantize``: the weight
    quantizer on a float32 out x in matrix."""
    wq = quantize(theta[:-1].T.float()).double().T
    tq = torch.cat([wq, theta[-1:]], 0)
    square = stats.reference - 2 * float((tq * stats.rhs).sum()) + float((tq * (stats.h @ tq)).sum())
    return math.sqrt(max(square, 0.0) / max(stats.reference, 1e-30))


def solve(theta: torch.Tensor, stats: Stats, knobs: ErrorCorrection, round_column_for: Callable,
          quantize: Callable) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """One Linear re-solved from its sums: ``theta`` its ``[W^T; b]`` now (float64); returns the new weight (out x in)
    and bias as float32, and the relative output error before and after. ``round_column_for(w)``: the column rounder
    of the weight quantizer, checked on ``w``; ``quantize``: the weight quantizer on a matrix."""
    before = relative_error(theta, stats, quantize)
    new = ridge(theta, stats.h, stats.rhs, knobs.ridge) if knobs.ridge is not None else theta
    w, b = new[:-1].T, new[-1]
    if knobs.rounding == "gptq":
        w, b = gptq(w, b, stats.h, round_column_for(w), knobs.damp)
    w, b = w.float(), b.float()
    after = relative_error(torch.cat([w.double().T, b.double()[None]], 0), stats, quantize)
    return w, b, before, after


def summary(targets: int, errors: dict, by_block, left: dict, items: int, seconds: float, log, what: str) -> dict:
    """The summary both backends return (and its log line): Linears (``what``) seen and corrected, the block
    container, those left and why, the items run, seconds, and each one's relative output error before / after."""
    out = {"linears": targets, "corrected": len(errors), "by_block": by_block, "left": left, "items": items,
           "seconds": round(seconds, 1),
           "relative_error": {m: [round(b, 5), round(a, 5)] for m, (b, a) in errors.items()}}
    if errors:
        log(f"error correction: {len(errors)} of {targets} {what}, mean relative output error "
            f"{sum(b for b, _ in errors.values()) / len(errors):.4f} -> "
            f"{sum(a for _, a in errors.values()) / len(errors):.4f} in {out['seconds']:.0f} s")
    return out


__all__ = ["MIN_ROWS_PER_INPUT", "ITEMS_PER_ROWS", "Stats", "augment", "ridge", "gptq", "rows_kept", "float_side",
           "batch_sums", "finish_sums", "relative_error", "solve", "summary"]
