"""Weight error correction on an ``openvino.Model`` (the package doc says what it does). OpenVINO inference in true
f32 gives each quantized MatMul's input as it reads it in the quantized IR (every FakeQuantize upstream applied) and
its float input and output in the float IR (the same op, found by name); the solve is the torch path's (``solver``);
the new weights go into the constant under the MatMul's weight FakeQuantize and the bias into its bias ``Add`` (one
is added after a MatMul without one).

One MatMul after the other, in topological order: each is solved on the inputs its corrected predecessors make (the
torch path's block by block order). The float IR runs once per ``FLOAT_GROUP`` MatMuls, the quantized IR once per
MatMul (recompiled with the weights solved so far). Runs on the IR before its weights are compressed."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ...openvino_model import TensorReader, bias_add, constant_value, f32_constant, ops_by_name
from ...recipes.knobs import ErrorCorrection
from ...rules.calibration import batches
from .solver import ITEMS_PER_ROWS, MIN_ROWS_PER_INPUT, batch_sums, finish_sums, float_side, rows_kept, solve, summary

FLOAT_GROUP = 8  # MatMuls whose float rows one pass of the float IR keeps (memory: rows x width per MatMul)


@dataclass
class _Target:
    name: str  # the MatMul's friendly name (the same in the float and the quantized IR)
    rows_per_item: int  # rows the MatMul reads per calibration item
    inputs: int  # its input features
    transpose_a: bool  # the MatMul reads its input transposed (a token-mixing Linear on (B, N, C))

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """The MatMul's input as rows x inputs."""
        return (x.transpose(-1, -2) if self.transpose_a else x).reshape(-1, self.inputs)


def _weight_fq(matmul):
    """The MatMul's weight FakeQuantize over a 2-D constant, or None."""
    fq = matmul.input_value(1).get_node()
    if fq.get_type_name() != "FakeQuantize":
        return None
    w = constant_value(fq.input_value(0))
    return fq if w is not None and w.ndim == 2 else None


def weight_targets(model) -> list[_Target]:
    """The MatMuls of ``model`` with a weight FakeQuantize, in topological order."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "MatMul" and _weight_fq(op) is not None:
            shape = op.input_value(0).get_partial_shape()
            dims = [d.get_length() if d.is_static else 1 for d in list(shape)]
            transpose_a = bool(op.get_attributes().get("transpose_a"))
            if transpose_a:
                dims[-2:] = dims[-1], dims[-2]
            out.append(_Target(op.get_friendly_name(), int(np.prod(dims[1:-1], dtype=np.int64)), dims[-1], transpose_a))
    return out


def _theta(matmul, weight_output) -> tuple[torch.Tensor, bool]:
    """``[W^T; b]`` (float64) of a MatMul whose weight is ``weight_output`` (out x in after ``transpose_b``), and
    whether the weight constant is stored (out, in)."""
    w = constant_value(weight_output)
    transposed = bool(matmul.get_attributes().get("transpose_b"))
    w = w if transposed else w.T
    add = bias_add(matmul)
    if add is None:
        b = np.zeros(w.shape[0], np.float32)
    else:
        port = next(i for i in range(2) if add.input_value(i).get_node() is not matmul)
        b = constant_value(add.input_value(port)).reshape(-1)
        b = np.broadcast_to(b, (w.shape[0],)) if b.size == 1 else b
    theta = torch.cat([torch.from_numpy(w.T.copy()).double(), torch.from_numpy(np.array(b, np.float64))[None]], 0)
    return theta, transposed


def _grid(fq, transposed: bool) -> tuple[Callable, Callable]:
    """The weight FakeQuantize as ``(round_column, quantize)``: a column of values (one per output channel)
    and an out x in matrix onto its grid, as OpenVINO's FakeQuantize computes them."""
    levels = fq.get_attributes()["levels"]
    w = constant_value(fq.input_value(0))

    def per_channel(port: int) -> torch.Tensor:
        v = np.broadcast_to(constant_value(fq.input_value(port)), w.shape)
        return torch.from_numpy(np.array(v[:, 0] if transposed else v[0, :], np.float64))

    il, ih, ol, oh = (per_channel(p) for p in (1, 2, 3, 4))

    def rounded(x: torch.Tensor, lo, hi, olo, ohi) -> torch.Tensor:
        q = torch.round((x.clamp(min=torch.minimum(lo, hi), max=torch.maximum(lo, hi)) - lo) / (hi - lo) * (levels - 1))
        return q / (levels - 1) * (ohi - olo) + olo

    def column(col: torch.Tensor) -> torch.Tensor:
        return rounded(col.double(), il, ih, ol, oh)

    def matrix(m: torch.Tensor) -> torch.Tensor:
        return rounded(m.double(), il[:, None], ih[:, None], ol[:, None], oh[:, None]).float()

    return (lambda _w: column), matrix


def _write(model, name: str, w: torch.Tensor, b: torch.Tensor) -> None:
    """The solved weight (out x in) into the constant under the MatMul's weight FakeQuantize, the bias into its
    bias Add (added after the MatMul where it has none)."""
    from openvino import opset13 as ops

    matmul = ops_by_name(model)[name]
    fq = _weight_fq(matmul)
    transposed = bool(matmul.get_attributes().get("transpose_b"))
    value = w.numpy() if transposed else w.numpy().T
    fq.input(0).replace_source_output(f32_constant(value).output(0))
    add = bias_add(matmul)
    if add is None:
        readers = list(matmul.output(0).get_target_inputs())
        add = ops.add(matmul.output(0), f32_constant(b.numpy()))
        add.set_friendly_name(f"{name}/qmlp_bias")
        for r in readers:
            r.replace_source_output(add.output(0))
        return
    port = next(i for i in range(2) if add.input_value(i).get_node() is not matmul)
    old = constant_value(add.input_value(port))
    add.input(port).replace_source_output(f32_constant(b.numpy().reshape(old.shape if old.size == b.numel() else
                                                                    (b.numel(),))).output(0))


def _float_reads(model, name: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """Where the float IR's MatMul ``name`` reads its input and makes its output (after its bias Add)."""
    matmul = ops_by_name(model)[name]
    add = bias_add(matmul)
    return (name, "in"), ((add.get_friendly_name(), "out") if add is not None else (name, "out"))


def correct_weights(quantized, float_model, items: list[torch.Tensor], knobs: ErrorCorrection,
                    log=lambda m: None, keep_float: tuple = ()) -> dict:
    """Correct every quantized MatMul of the ``openvino.Model`` ``quantized`` in place against ``float_model`` (the
    float IR it was quantized from); ``keep_float``: names of FakeQuantizes left out while the weights are solved.
    Returns the summary the torch path returns."""
    t0 = time.time()
    targets = weight_targets(quantized)
    arrays = [x.numpy() for x in items]

    def needed(t: _Target) -> int:
        return MIN_ROWS_PER_INPUT * (t.inputs + 1)

    if knobs.items or knobs.rows is None:
        arrays = arrays[:knobs.items] if knobs.items else arrays
    else:
        solvable = [t for t in targets if t.rows_per_item * len(arrays) >= needed(t)]
        arrays = arrays[:max((math.ceil(max(ITEMS_PER_ROWS * knobs.rows, needed(t)) / t.rows_per_item)
                              for t in solvable), default=len(arrays))]
    left = {t.name: f"{t.rows_per_item * len(arrays)} calibration rows for {t.inputs} inputs (a solve needs "
                    f"{MIN_ROWS_PER_INPUT} per input)" for t in targets if t.rows_per_item * len(arrays) < needed(t)}
    todo = [t for t in targets if t.name not in left]
    float_ops = ops_by_name(float_model)
    chunks = list(batches(arrays, knobs.batch))
    generator = torch.Generator().manual_seed(0)
    errors = {}
    for g in range(0, len(todo), FLOAT_GROUP):
        group = todo[g:g + FLOAT_GROUP]
        reads = [r for t in group for r in _float_reads(float_model, t.name)]
        run_float = TensorReader(float_model, reads)
        kept: dict[str, list] = {t.name: [] for t in group}
        for chunk in chunks:
            outs = run_float(chunk)
            for k, t in enumerate(group):
                xf = t.rows(outs[2 * k])
                yf = outs[2 * k + 1].reshape(len(xf), -1)
                rows = rows_kept(len(xf), len(xf) * len(arrays) / len(chunk), t.inputs + 1, knobs, generator)
                kept[t.name].append((rows, *float_side(xf, yf, rows), len(xf)))
        for t in group:
            run = TensorReader(quantized, [(t.name, "in")], bypass=keep_float)
            sums = None
            for j, chunk in enumerate(chunks):
                xq = t.rows(run(chunk)[0])
                rows, operand, reference, read = kept[t.name][j]
                new = batch_sums(xq if rows is None else xq[rows], operand, reference, read)
                sums = new if sums is None else [a + b for a, b in zip(sums, new)]
            del kept[t.name]
            matmul = ops_by_name(quantized)[t.name]
            float_theta, _ = _theta(float_ops[t.name], float_ops[t.name].input_value(1))
            theta, transposed = _theta(matmul, _weight_fq(matmul).input_value(0))
            round_column_for, quantize = _grid(_weight_fq(matmul), transposed)
            w, b, before, after = solve(theta, finish_sums(sums, float_theta), knobs, round_column_for, quantize)
            _write(quantized, t.name, w, b)
            errors[t.name] = (before, after)
    quantized.validate_nodes_and_infer_types()
    return summary(len(targets), errors, None, left, len(arrays), time.time() - t0, log, "MatMuls")

__all__ = ["correct_weights", "weight_targets"]
