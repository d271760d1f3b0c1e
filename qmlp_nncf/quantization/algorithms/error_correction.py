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

Order matters: a Linear solved on inputs from *uncorrected* predecessors learns to undo their error too, and once
they are corrected it undoes it twice (one pass for all Linears of a 6-block ResMLP at W4A4: 58.5 % top-1; four
depth-ordered passes: 87.7 %; one Linear after the other: 88.4 %, float 89.5 %). So where the Linears sit in an
``nn.Sequential`` of blocks (timm's ``blocks``), it goes block by block from cached block inputs: the float
block runs once, the quantized block up to each of its Linears in turn (each solved after the ones before it)
and once through for the next block's input; NNCF's quantizers run as in the full forward (``BlockRunner``).
Linears outside the blocks are done in ``stages`` depth-ordered groups, each from a pass of both models stopped
after the group's last Linear. A Linear with too few calibration rows (the classifier) is left as it is.

Cost on a 224-px model (196 tokens per image): the sums keep a random ``rows`` of each Linear's rows (tokens of
nearby images are much alike; the input Gram matrix of a 1536-wide Linear over all 58,800 rows of 300 images
costs as much as a forward pass), it runs the first ``items`` calibration images, the solve's right-hand side is
``X_q^T Y_f`` (the float output) or ``X_q^T X_f [W^T; b]``, whichever is narrower, and GPTQ rounds on the
quantizer's grid without calling it per column.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.function_hook.hook_executor_mode import FunctionHookMode
from nncf.torch.quantization.layers import AsymmetricQuantizer, BaseQuantizer, SymmetricQuantizer
from nncf.torch.quantization.quantize_functions import TuneRange
from torch import nn

from ..recipes.knobs import ErrorCorrection
from ..rules.roles import GraphRoles, module_of
from ..rules.specs import SpecError

MIN_ROWS_PER_INPUT = 8  # calibration rows per input feature a Linear needs to be corrected (else it is left as is)
ITEMS_PER_ROWS = 1.5  # default items: each Linear reads >= 1.5 x `rows` rows to draw from


@dataclass
class _Target:
    op: str  # NNCF op name (``blocks/0/mlp_channels/fc1/linear/0``)
    module: str  # its nn.Linear (``blocks.0.mlp_channels.fc1``)
    quantizer: BaseQuantizer  # the weight quantizer


class _Stop(Exception):
    """Raised by the hook of a stage's last Linear: the rest of the forward is not needed."""


class _Recorder(nn.Module):
    """An NNCF pre-hook that keeps the rows of the tensor the op reads (after the quantizers before it)."""

    def __init__(self, stop: bool = False):
        super().__init__()
        self.seen: Optional[torch.Tensor] = None
        self.stop = stop

    def forward(self, x):
        self.seen = x.detach().reshape(-1, x.shape[-1])
        if self.stop:
            raise _Stop
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


@dataclass
class _Stats:
    """Sums over the calibration rows kept for one Linear (``X`` = its input with a ones column, ``Y_f`` = the
    float Linear's output): ``h = X_q^T X_q``; ``rhs = X_q^T Y_f`` (the solve's right-hand side, gathered as
    ``X_q^T X_f`` times the float ``[W^T; b]`` where the input is narrower than the output); ``reference =
    ||Y_f||^2`` on the rows kept; ``rows``: the rows read (before any were left out)."""

    h: torch.Tensor
    rhs: torch.Tensor
    reference: float
    rows: int


def _forward_until_stop(model: nn.Module, x: torch.Tensor) -> None:
    try:
        model(x)
    except _Stop:
        pass


@torch.no_grad()
def linear_sums(quantized: nn.Module, float_model: nn.Module, group: list[_Target], items, knobs: "ErrorCorrection",
                seed: int = 0) -> dict[str, _Stats]:
    """One pass over ``items`` through both models, each stopped after the group's last Linear; per Linear, a
    random subset of about ``knobs.rows`` rows (the same rows in both models; at least ``MIN_ROWS_PER_INPUT`` per
    input where there are that many)."""
    storage = get_hook_storage(quantized)
    float_modules = dict(float_model.named_modules())
    q_seen = {t.op: _Recorder(stop=t is group[-1]) for t in group}
    f_seen: dict[str, tuple] = {}

    def float_hook(op: str, stop: bool):
        def record(_module, args, out):
            f_seen[op] = (args[0].detach().reshape(-1, args[0].shape[-1]), out.detach().reshape(-1, out.shape[-1]))
            if stop:
                raise _Stop
        return record

    handles = [storage.register_pre_function_hook(t.op, 0, q_seen[t.op]) for t in group]
    handles += [float_modules[t.module].register_forward_hook(float_hook(t.op, t is group[-1])) for t in group]
    sums: dict[str, list] = {}
    generator = torch.Generator().manual_seed(seed)
    try:
        for i in range(0, len(items), knobs.batch):
            x = torch.cat(items[i:i + knobs.batch])
            _forward_until_stop(quantized, x)
            _forward_until_stop(float_model, x)
            for t in group:
                xq, (xf, yf) = q_seen[t.op].seen, f_seen.pop(t.op)
                q_seen[t.op].seen = None
                rows = _rows_kept(len(xq), len(xq) * len(items) / len(x), xq.shape[1] + 1, knobs, generator)
                new = _batch_sums(xq if rows is None else xq[rows], *_float_side(xf, yf, rows), len(xq))
                sums[t.op] = new if t.op not in sums else [a + b for a, b in zip(sums[t.op], new)]
    finally:
        for h in handles:
            h.remove()
    return {t.op: _finish_sums(sums[t.op], float_modules[t.module]) for t in group}


def _theta(linear: nn.Linear) -> torch.Tensor:
    """``[W^T; b]`` ((in + 1) x out, float64) of a Linear."""
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    return torch.cat([linear.weight.detach().double().T, bias.detach().double()[None]], 0)


def _ridge(theta: torch.Tensor, h: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """``argmin ||Y_f - X_q theta'||^2 + lambda ||theta' - theta||^2`` (bias row not penalised)."""
    n = h.shape[0] - 1
    reg = torch.zeros_like(h)
    reg.diagonal()[:n] = ridge * h.diagonal()[:n].mean()
    return torch.linalg.solve(h + reg, rhs + reg @ theta)


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

    q, _ = column_rounder(quantizer, weight)
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


def column_rounder(quantizer: BaseQuantizer, weight: torch.Tensor) -> tuple[Callable, bool]:
    """``(f, fast)``: ``f(column)`` is the column rounded on ``quantizer``'s per-output-channel grid; ``fast``: it
    uses NNCF's own arithmetic (its ``Quantize`` forward, float32, term by term) instead of a quantizer call per
    column (a call costs ~0.2 ms, and a 224-px ResMLP-24 has 51k columns). Checked against the quantizer on
    ``weight`` first: the two may differ in the last float bit and, at an exact half step, in the direction of
    rounding; where they differ more, or for another quantizer kind or a grid that is not per output channel, the
    quantizer itself is called."""

    def call(col: torch.Tensor) -> torch.Tensor:
        return quantizer(col[:, None].float()).double()[:, 0]

    with torch.no_grad():
        if isinstance(quantizer, SymmetricQuantizer):
            scale = quantizer.scale.detach().abs() + quantizer.eps
            low = scale * quantizer.level_low / quantizer.level_high
            width = scale - low
        elif isinstance(quantizer, AsymmetricQuantizer):
            low, width = TuneRange.apply(quantizer.input_low.detach(), quantizer.input_range.detach().abs() +
                                         quantizer.eps, quantizer.levels)
        else:
            return call, False
        if low.numel() not in (1, weight.shape[0]):
            return call, False
        low, width = low.float().reshape(-1, 1).expand(weight.shape[0], 1), width.float().reshape(-1, 1).expand(
            weight.shape[0], 1)
        step = (quantizer.levels - 1) / width
        zero = (-low * step).round()

        def rounded(x: torch.Tensor) -> torch.Tensor:  # x: out x k, float32
            y = x.clip(min=low, max=low + width)
            return ((y - low) * step - zero).round() / step  # NNCF's Quantize.forward, term by term

        steps_off = ((rounded(weight.float()) - quantizer(weight.float())).abs() * step).round()
        if float((steps_off > 0).float().mean()) > 1e-3:  # more than the odd near-tie rounded the other way
            return call, False
    return (lambda col: rounded(col[:, None].float()).double()[:, 0]), True


def _solve(linear: nn.Linear, stats: _Stats, quantizer: BaseQuantizer, knobs: ErrorCorrection) -> tuple[float, float]:
    """Re-solve and round one Linear in place from its sums; returns its relative output error before and after."""
    theta = _theta(linear)  # where NNCF left it (SmoothQuant's scales, bias correction)
    before = _relative_error(theta, stats, quantizer)
    new = _ridge(theta, stats.h, stats.rhs, knobs.ridge) if knobs.ridge is not None else theta
    w, b = new[:-1].T, new[-1]
    if knobs.rounding == "gptq":
        w, b = _gptq(w, b, stats.h, quantizer, knobs.damp)
    linear.weight.copy_(w.float())
    if linear.bias is None:
        linear.bias = nn.Parameter(b.float())
    else:
        linear.bias.copy_(b.float())
    return before, _relative_error(_theta(linear), stats, quantizer)


def _block_container(model: nn.Module, targets: list[_Target]) -> Optional[str]:
    """The outermost ``nn.Sequential`` whose children hold most of the Linears (timm's ``blocks``), or None."""
    for name, module in model.named_modules():
        if name and isinstance(module, nn.Sequential) and len(module) > 1:
            if 2 * sum(t.module.startswith(f"{name}.") for t in targets) >= len(targets):
                return name
    return None


class BlockRunner:
    """Runs one block of an NNCF model with its quantizers, exactly as the block runs inside the full forward
    (NNCF names an op by the module path from the model down, so the path to the container is put on the stack)."""

    def __init__(self, model: nn.Module, container: str):
        self.model, self.storage = model, get_hook_storage(model)
        modules = dict(model.named_modules())
        parts = container.split(".")
        self.path = [modules[".".join(parts[:i + 1])] for i in range(len(parts))]

    def __call__(self, block: nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
        with FunctionHookMode(model=self.model, hook_storage=self.storage) as mode:
            for module in self.path:
                mode.push_module_call_stack(module)
            try:
                return block(x)
            except _Stop:
                return None
            finally:
                for _ in self.path:
                    mode.pop_module_call_stack()


def first_block_inputs(model: nn.Module, first: nn.Module, items, batch: int) -> list[torch.Tensor]:
    """The input of ``first`` (the first block) per batch of ``items``; the model stops there."""
    seen = []

    def stop(_module, args):
        seen.append(args[0].detach())
        raise _Stop

    handle = first.register_forward_pre_hook(stop)
    try:
        for i in range(0, len(items), batch):
            _forward_until_stop(model, torch.cat(items[i:i + batch]))
    finally:
        handle.remove()
    return seen


@torch.no_grad()
def _correct_by_blocks(quantized: nn.Module, float_model: nn.Module, container: str, targets: list[_Target], items,
                       knobs: ErrorCorrection) -> dict[str, tuple[float, float]]:
    """Block by block from cached block inputs: each Linear is solved on inputs that its corrected predecessors
    produced, and each block runs about 2.5 times (float once, quantized up to each Linear and once through)."""
    q_blocks, f_blocks = dict(quantized.named_modules())[container], dict(float_model.named_modules())[container]
    modules, float_modules = dict(quantized.named_modules()), dict(float_model.named_modules())
    runner = BlockRunner(quantized, container)
    q_in = first_block_inputs(quantized, q_blocks[0], items, knobs.batch)
    f_in = first_block_inputs(float_model, f_blocks[0], items, knobs.batch)
    generator = torch.Generator().manual_seed(0)
    errors = {}
    for index, (q_block, f_block) in enumerate(zip(q_blocks, f_blocks)):
        group = [t for t in targets if t.module.startswith(f"{container}.{index}.")]
        # the float block once: its output is the next block's input; the rows kept of each Linear's input / output
        kept: dict[str, list] = {t.op: [] for t in group}
        captured: dict[str, tuple] = {}
        handles = [float_modules[t.module].register_forward_hook(
            lambda _m, args, out, op=t.op: captured.__setitem__(op, (args[0].reshape(-1, args[0].shape[-1]),
                                                                    out.reshape(-1, out.shape[-1]))))
            for t in group]
        try:
            for j, x in enumerate(f_in):
                f_in[j] = f_block(x)
                for t in group:
                    xf, yf = captured.pop(t.op)
                    rows = _rows_kept(len(xf), len(xf) * len(items) / len(x), xf.shape[1] + 1, knobs, generator)
                    kept[t.op].append((rows, *_float_side(xf, yf, rows), len(xf)))
        finally:
            for h in handles:
                h.remove()
        # each Linear in turn, on the quantized block's input as its corrected predecessors make it
        for t in group:
            recorder = _Recorder(stop=True)
            handle = runner.storage.register_pre_function_hook(t.op, 0, recorder)
            sums = None
            try:
                for j, x in enumerate(q_in):
                    runner(q_block, x)
                    rows, operand, reference, read = kept[t.op][j]
                    new = _batch_sums(recorder.seen if rows is None else recorder.seen[rows], operand, reference, read)
                    sums = new if sums is None else [a + b for a, b in zip(sums, new)]
            finally:
                handle.remove()
            errors[t.module] = _solve(modules[t.module], _finish_sums(sums, float_modules[t.module]), t.quantizer,
                                      knobs)
            del kept[t.op]
        for j, x in enumerate(q_in):
            q_in[j] = runner(q_block, x)
    return errors


def _rows_kept(rows: int, total: float, inputs: int, knobs: ErrorCorrection, generator) -> Optional[torch.Tensor]:
    """Indices of the rows of one batch to keep (about ``knobs.rows`` over all batches), or None for all."""
    if knobs.rows is None:
        return None
    wanted = max(knobs.rows, MIN_ROWS_PER_INPUT * inputs)  # never too few for a solve
    keep = min(rows, math.ceil(rows * wanted / total))
    return None if keep >= rows else torch.randperm(rows, generator=generator)[:keep]


def _float_side(xf: torch.Tensor, yf: torch.Tensor, rows: Optional[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """What the sums need of the float Linear's rows kept: ``[X_f 1]`` or ``Y_f``, whichever is narrower (the
    cross term's width), and ``||Y_f||^2``."""
    if rows is not None:
        xf, yf = xf[rows], yf[rows]
    return (_augment(xf) if xf.shape[1] + 1 <= yf.shape[1] else yf.float()), float(yf.double().square().sum())


def _batch_sums(xq: torch.Tensor, operand: torch.Tensor, reference: float, read: int) -> list:
    """One batch's share of ``_Stats`` (f32 products, summed in f64)."""
    xq = _augment(xq)
    return [(xq.T @ xq).double(), (xq.T @ operand).double(), reference, read]


def _finish_sums(sums: list, float_linear: nn.Linear) -> _Stats:
    h, cross, reference, rows = sums
    if cross.shape[1] == h.shape[0]:  # X_q^T X_f: times the float [W^T; b]
        cross = cross @ _theta(float_linear)
    return _Stats(h, cross, reference, rows)


def _rows_per_item(quantized: nn.Module, targets: list[_Target], item: torch.Tensor) -> dict[str, int]:
    """Rows each Linear reads per calibration item (one item through the model)."""
    storage = get_hook_storage(quantized)
    recorders = {t.op: _Recorder() for t in targets}
    handles = [storage.register_pre_function_hook(t.op, 0, recorders[t.op]) for t in targets]
    try:
        with torch.no_grad():
            quantized(item)
    finally:
        for h in handles:
            h.remove()
    return {op: len(r.seen) if r.seen is not None else 0 for op, r in recorders.items()}


def correct_weights(quantized: nn.Module, float_model: nn.Module, items: list[torch.Tensor], roles: GraphRoles,
                    knobs: ErrorCorrection, log=lambda m: None) -> dict:
    """Correct every quantized Linear of ``quantized`` in place (see the module doc); returns a summary
    (Linears corrected, relative output error before/after on the rows kept, those left and why, seconds)."""
    t0 = time.time()
    targets = weight_targets(quantized, roles)
    modules = dict(quantized.named_modules())
    per_item = _rows_per_item(quantized, targets, items[0])

    def needed(t: _Target) -> int:  # rows a solve needs
        return MIN_ROWS_PER_INPUT * (modules[t.module].in_features + 1)

    if knobs.items or knobs.rows is None:
        items = items[:knobs.items] if knobs.items else items
    else:  # the fewest items that give every Linear that can be solved ITEMS_PER_ROWS x rows to draw from
        solvable = [t for t in targets if per_item[t.op] * len(items) >= needed(t)]
        items = items[:max((math.ceil(max(ITEMS_PER_ROWS * knobs.rows, needed(t)) / per_item[t.op])
                            for t in solvable), default=len(items))]
    left = {t.module: f"{per_item[t.op] * len(items)} calibration rows for {modules[t.module].in_features} inputs "
                      f"(a solve needs {MIN_ROWS_PER_INPUT} per input)"
            for t in targets if per_item[t.op] * len(items) < needed(t)}
    todo = [t for t in targets if t.module not in left]
    container = _block_container(quantized, todo)
    errors = {}
    if container is not None:
        errors.update(_correct_by_blocks(quantized, float_model, container,
                                         [t for t in todo if t.module.startswith(f"{container}.")], items, knobs))
        todo = [t for t in todo if not t.module.startswith(f"{container}.")]
    per_stage = max(1, math.ceil(len(todo) / knobs.stages))
    for s in range(0, len(todo), per_stage):  # the rest: depth-ordered groups, a forward of both models per group
        group = todo[s:s + per_stage]
        stats = linear_sums(quantized, float_model, group, items, knobs)
        with torch.no_grad():
            for t in group:
                errors[t.module] = _solve(modules[t.module], stats[t.op], t.quantizer, knobs)
    summary = {"linears": len(targets), "corrected": len(errors), "by_block": container, "left": left,
               "items": len(items),
               "seconds": round(time.time() - t0, 1),
               "relative_error": {m: [round(b, 5), round(a, 5)] for m, (b, a) in errors.items()}}
    if errors:
        log(f"error correction: {len(errors)} of {len(targets)} Linears, mean relative output error "
            f"{sum(b for b, _ in errors.values()) / len(errors):.4f} -> "
            f"{sum(a for _, a in errors.values()) / len(errors):.4f} in {summary['seconds']:.0f} s")
    return summary


def _relative_error(theta: torch.Tensor, stats: _Stats, quantizer: BaseQuantizer) -> float:
    """``||Y_f - [X_q 1] Q(theta)|| / ||Y_f||`` on the rows kept, from the sums alone."""
    wq = quantizer(theta[:-1].T.float()).double().T
    tq = torch.cat([wq, theta[-1:]], 0)
    square = stats.reference - 2 * float((tq * stats.rhs).sum()) + float((tq * (stats.h @ tq)).sum())
    return math.sqrt(max(square, 0.0) / max(stats.reference, 1e-30))
