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
from .torch_backend import BlockRunner, column_rounder, correct_weights, first_block_inputs, linear_sums, weight_targets

__all__ = ["correct_weights", "column_rounder", "linear_sums", "weight_targets", "BlockRunner", "first_block_inputs"]
