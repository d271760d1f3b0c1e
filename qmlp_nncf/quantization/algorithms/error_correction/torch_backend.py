"""Weight error correction on an NNCF torch model (the package doc says what it does): NNCF pre-hooks record
each Linear's quantized input, the float model's forward hooks its float input and output."""
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

from ...recipes.knobs import ErrorCorrection
from ...rules.roles import GraphRoles, module_of
from .solver import (ITEMS_PER_ROWS, MIN_ROWS_PER_INPUT, Stats, batch_sums, finish_sums, float_side, rows_kept, solve,
                     summary)


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


def _forward_until_stop(model: nn.Module, x: torch.Tensor) -> None:
    try:
        model(x)
    except _Stop:
        pass


@torch.no_grad()
def linear_sums(quantized: nn.Module, float_model: nn.Module, group: list[_Target], items, knobs: "ErrorCorrection",
                seed: int = 0) -> dict[str, Stats]:
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
                rows = rows_kept(len(xq), len(xq) * len(items) / len(x), xq.shape[1] + 1, knobs, generator)
                new = batch_sums(xq if rows is None else xq[rows], *float_side(xf, yf, rows), len(xq))
                sums[t.op] = new if t.op not in sums else [a + b for a, b in zip(sums[t.op], new)]
    finally:
        for h in handles:
            h.remove()
    return {t.op: finish_sums(sums[t.op], _theta(float_modules[t.module])) for t in group}


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


def _solve(linear: nn.Linear, stats: Stats, quantizer: BaseQuantizer, knobs: ErrorCorrection) -> tuple[float, float]:
    """Re-solve and round one Linear in place from its sums; returns its relative output error before and after."""
    w, b, before, after = solve(_theta(linear), stats, knobs,  # theta: where NNCF left it (SmoothQuant, bias corr.)
                                lambda weight: column_rounder(quantizer, weight)[0], lambda m: quantizer(m))
    linear.weight.copy_(w)
    if linear.bias is None:
        linear.bias = nn.Parameter(b)
    else:
        linear.bias.copy_(b)
    return before, after


def _theta(linear: nn.Linear) -> torch.Tensor:
    """``[W^T; b]`` ((in + 1) x out, float64) of a Linear."""
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    return torch.cat([linear.weight.detach().double().T, bias.detach().double()[None]], 0)


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
                    rows = rows_kept(len(xf), len(xf) * len(items) / len(x), xf.shape[1] + 1, knobs, generator)
                    kept[t.op].append((rows, *float_side(xf, yf, rows), len(xf)))
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
                    new = batch_sums(recorder.seen if rows is None else recorder.seen[rows], operand, reference, read)
                    sums = new if sums is None else [a + b for a, b in zip(sums, new)]
            finally:
                handle.remove()
            stats = finish_sums(sums, _theta(float_modules[t.module]))
            errors[t.module] = _solve(modules[t.module], stats, t.quantizer, knobs)
            del kept[t.op]
        for j, x in enumerate(q_in):
            q_in[j] = runner(q_block, x)
    return errors


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
    return summary(len(targets), errors, container, left, len(items), time.time() - t0, log, "Linears")


