"""Weight error correction after calibration: each quantized Linear's weights and bias are re-solved so that, on
its *quantized* inputs, it reproduces what the float Linear computes on its *float* inputs.

Per Linear, with ``X_f`` its input in the float model, ``X_q`` its input in the quantized model (after every
quantizer upstream, as the op sees it) and the float weights ``W, b``:

1. ``ridge`` (ERQ's activation-error reduction, Zhong et al., ICML 2024): ``[W' b'] = argmin ||X_f W^T + b -
   X_q W'^T - b'||^2 + lambda ||W' - W||^2``, closed form from ``H = [X_q 1]^T [X_q 1]`` and ``G = [X_q 1]^T
   [X_f 1]``; ``lambda = ridge * mean(diag H)``. It also corrects the bias (what fast bias correction does).
   The target is the float model's own Linear, so SmoothQuant's rescaled weights are solved for the rescaled
   inputs. A Linear with fewer than ``MIN_ROWS_PER_INPUT`` calibration rows per input (the classifier reads one
   row per image) is left as it is: there a solve would fit the calibration items.
2. ``rounding: "gptq"`` (Frantar et al., ICLR 2023): ``W'`` is rounded column by column onto the weight
   quantizer's own grid (its calibrated range is kept), each column's rounding error spread over the columns not
   yet rounded and the bias through ``H^-1``, so ``||X_q (W' - Q(W'))^T||`` stays small. ``"nearest"`` leaves
   the rounding to the quantizer.

The model stays a plain NNCF model (only parameter values change); the exported IR has the corrected weights.
Linears are solved in ``stages`` depth-ordered groups, each from a fresh pass over the calibration items, so later
groups see the earlier groups' corrected outputs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import BaseQuantizer
from torch import nn

from .roles import GraphRoles, module_of
from .specs import SpecError, check_type, switch_or_knobs

ROUNDINGS = ("gptq", "nearest")
MIN_ROWS_PER_INPUT = 8  # calibration rows per input feature a Linear needs to be corrected (else it is left as is)


@dataclass(frozen=True)
class ErrorCorrection:
    """Recipe knob ``"error_correction": {"ridge": 0.1, "rounding": "gptq", "damp": 0.01, "stages": 4}``."""

    ridge: Optional[float] = 0.1  # lambda / mean(diag H); None: keep the float weights (rounding only)
    rounding: str = "gptq"
    damp: float = 0.01  # GPTQ's Hessian damping, a fraction of mean(diag H)
    stages: int = 4  # depth-ordered groups of Linears, one calibration pass each
    batch: int = 32  # calibration items per forward

    @classmethod
    def from_value(cls, value, where: str) -> Optional["ErrorCorrection"]:
        kw = switch_or_knobs(value, {"ridge", "rounding", "damp", "stages", "batch"}, where)
        if kw is None:
            return None
        kw = dict(kw)
        if kw.get("ridge") is not None:
            kw["ridge"] = float(check_type(kw["ridge"], (int, float), f"{where}.ridge"))
            if kw["ridge"] <= 0:
                raise SpecError(f"{where}.ridge must be > 0 (or null to keep the float weights), got {kw['ridge']}")
        if kw.get("rounding", "gptq") not in ROUNDINGS:
            raise SpecError(f"{where}.rounding: {kw['rounding']!r} unknown; choose one of {list(ROUNDINGS)}")
        if "damp" in kw:
            kw["damp"] = float(check_type(kw["damp"], (int, float), f"{where}.damp"))
            if not 0 < kw["damp"] < 1:
                raise SpecError(f"{where}.damp must be in (0, 1), got {kw['damp']}")
        for key in ("stages", "batch"):
            if key in kw and check_type(kw[key], int, f"{where}.{key}") < 1:
                raise SpecError(f"{where}.{key} must be >= 1, got {kw[key]}")
        return cls(**kw)

    def to_value(self) -> dict:
        return {"ridge": self.ridge, "rounding": self.rounding, "damp": self.damp, "stages": self.stages,
                "batch": self.batch}


@dataclass
class _Target:
    op: str  # NNCF op name (``blocks/0/mlp_channels/fc1/linear/0``)
    module: str  # its nn.Linear (``blocks.0.mlp_channels.fc1``)
    quantizer: BaseQuantizer  # the weight quantizer


class _Recorder(nn.Module):
    """An NNCF pre-hook that keeps the rows of the tensor the op reads (after the quantizers before it)."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().reshape(-1, x.shape[-1]))
        return x


def weight_targets(quantized: nn.Module, roles: GraphRoles) -> list[_Target]:
    """The Linears of ``quantized`` that have a weight quantizer, in topological order."""
    modules = dict(quantized.named_modules())
    hooks = {name: hook for name, hook in get_hook_storage(quantized).named_hooks() if isinstance(hook, BaseQuantizer)}
    targets = []
    for node in roles.graph.topological_sort():
        quantizer = next((h for n, h in hooks.items() if n.startswith(f"pre_hooks.{node.node_name}__1.")), None)
        module = modules.get(module_of(node.node_name))
        if quantizer is not None and isinstance(module, nn.Linear) and node.node_name.endswith("/0"):
            targets.append(_Target(node.node_name, module_of(node.node_name), quantizer))
    return targets


def _augment(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.float(), torch.ones(len(x), 1)], 1)


@torch.no_grad()
def _statistics(quantized: nn.Module, float_model: nn.Module, group: list[_Target], items, batch: int):
    """``(H, G, F)`` per target: ``[X_q 1]^T [X_q 1]``, ``[X_q 1]^T [X_f 1]`` and ``[X_f 1]^T [X_f 1]``."""
    storage = get_hook_storage(quantized)
    float_modules = dict(float_model.named_modules())
    q_seen = {t.op: _Recorder() for t in group}
    f_seen: dict[str, list] = {t.op: [] for t in group}
    handles = [storage.register_pre_function_hook(t.op, 0, q_seen[t.op]) for t in group]
    handles += [float_modules[t.module].register_forward_pre_hook(
        lambda _m, args, op=t.op: f_seen[op].append(args[0].detach().reshape(-1, args[0].shape[-1])))
        for t in group]
    stats = {t.op: None for t in group}
    try:
        for i in range(0, len(items), batch):
            x = torch.cat(items[i:i + batch])
            quantized(x)
            float_model(x)
            for t in group:
                xq, xf = _augment(torch.cat(q_seen[t.op].seen)), _augment(torch.cat(f_seen[t.op]))
                q_seen[t.op].seen.clear()
                f_seen[t.op].clear()
                new = tuple(m.double() for m in (xq.T @ xq, xq.T @ xf, xf.T @ xf))  # one batch in f32, summed in f64
                stats[t.op] = new if stats[t.op] is None else tuple(a + b for a, b in zip(stats[t.op], new))
    finally:
        for h in handles:
            h.remove()
    return stats


def _theta(linear: nn.Linear) -> torch.Tensor:
    """``[W^T; b]`` ((in + 1) x out, float64) of a Linear."""
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    return torch.cat([linear.weight.detach().double().T, bias.detach().double()[None]], 0)


def _ridge(theta: torch.Tensor, theta_f: torch.Tensor, h: torch.Tensor, g: torch.Tensor, ridge: float) -> torch.Tensor:
    """``argmin ||X_f theta_f - X_q theta'||^2 + lambda ||theta' - theta||^2`` (bias row not penalised)."""
    n = h.shape[0] - 1
    reg = torch.zeros_like(h)
    reg.diagonal()[:n] = ridge * h.diagonal()[:n].mean()
    return torch.linalg.solve(h + reg, g @ theta_f + reg @ theta)


def _gptq(weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, quantizer: BaseQuantizer, damp: float,
          block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ on ``[W b]`` (out x in+1): the W columns rounded by ``quantizer`` (per output channel), the bias
    column kept in float and absorbing the error left."""
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

    def q(cols: torch.Tensor) -> torch.Tensor:  # the quantizer's per-channel scale broadcasts over columns
        return quantizer(cols.float()).double()

    for i0 in range(0, n, block):
        i1 = min(i0 + block, n)
        wb, err = w[:, i0:i1].clone(), torch.zeros(w.shape[0], i1 - i0, dtype=torch.float64)
        hb = hinv[i0:i1, i0:i1]
        for j in range(i1 - i0):
            col = wb[:, j]
            qcol = q(col[:, None])[:, 0]
            e = (col - qcol) / hb[j, j]
            wb[:, j:] -= e[:, None] * hb[j, j:][None, :]
            wb[:, j] = qcol
            err[:, j] = e
        w[:, i0:i1] = wb
        w[:, i1:] -= err @ hinv[i0:i1, i1:]
    return w[:, :n], w[:, n]


def correct_weights(quantized: nn.Module, float_model: nn.Module, items: list[torch.Tensor], roles: GraphRoles,
                    knobs: ErrorCorrection, log=lambda m: None) -> dict:
    """Correct every quantized Linear of ``quantized`` in place (see the module doc); returns a summary
    (Linears corrected, relative output error before/after on the calibration items, seconds)."""
    t0 = time.time()
    targets = weight_targets(quantized, roles)
    modules = dict(quantized.named_modules())
    per_stage = max(1, math.ceil(len(targets) / knobs.stages))
    errors = []
    float_modules = dict(float_model.named_modules())
    for s in range(0, len(targets), per_stage):
        group = targets[s:s + per_stage]
        stats = _statistics(quantized, float_model, group, items, knobs.batch)
        with torch.no_grad():
            for t in group:
                linear, h, g, f = modules[t.module], *stats[t.op]
                theta_f = _theta(float_modules[t.module])  # the float Linear on its float inputs: the target
                theta = _theta(linear)  # where NNCF left it (SmoothQuant's scales, bias correction)
                reference = float((theta_f * (f @ theta_f)).sum())  # ||float outputs||^2
                before = _relative_error(theta, theta_f, h, g, reference, t.quantizer)
                if float(h[-1, -1]) < MIN_ROWS_PER_INPUT * h.shape[0]:  # too few rows: a solve would fit them
                    errors.append((t.module, before, before))
                    continue
                new = _ridge(theta, theta_f, h, g, knobs.ridge) if knobs.ridge is not None else theta
                w, b = new[:-1].T, new[-1]
                if knobs.rounding == "gptq":
                    w, b = _gptq(w, b, h, t.quantizer, knobs.damp)
                linear.weight.copy_(w.float())
                if linear.bias is None:
                    linear.bias = nn.Parameter(b.float())
                else:
                    linear.bias.copy_(b.float())
                after = _relative_error(_theta(linear), theta_f, h, g, reference, t.quantizer)
                errors.append((t.module, before, after))
    summary = {"linears": len(targets), "corrected": sum(b != a for _, b, a in errors),
               "stages": math.ceil(len(targets) / per_stage), "seconds": round(time.time() - t0, 1),
               "relative_error": {m: [round(b, 5), round(a, 5)] for m, b, a in errors}}
    if errors:
        log(f"error correction: {len(targets)} Linears, mean relative output error "
            f"{sum(b for _, b, _ in errors) / len(errors):.4f} -> {sum(a for _, _, a in errors) / len(errors):.4f} "
            f"in {summary['seconds']:.0f} s")
    return summary


def _relative_error(theta: torch.Tensor, theta_f: torch.Tensor, h: torch.Tensor, g: torch.Tensor, reference: float,
                    quantizer: BaseQuantizer) -> float:
    """``||[X_f 1] theta_f - [X_q 1] Q(theta)|| / ||[X_f 1] theta_f||`` from the Gram matrices alone."""
    wq = quantizer(theta[:-1].T.float()).double().T
    tq = torch.cat([wq, theta[-1:]], 0)
    square = reference - 2 * float((tq * (g @ theta_f)).sum()) + float((tq * (h @ tq)).sum())
    return math.sqrt(max(square, 0.0) / max(reference, 1e-30))
