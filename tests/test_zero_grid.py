"""Torch fake-quant and the exported IR compute the same numbers where NNCF's asymmetric quantizer leaves its zero
off the grid (a 4-bit GELU output: the range reaches just below zero)."""
import copy

import numpy as np
import openvino as ov
import pytest
import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import AsymmetricQuantizer

from qmlp_nncf.export.openvino_ir import _off_grid_asymmetric_quantizers, convert
from qmlp_nncf.quantization import quantize
from qmlp_nncf.quantization.algorithms.zero_grid import align_zero_points

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resmlp_w4a4(fmnist_train, fmnist_test):
    from qmlp_nncf.sources import ModelSource

    model = ModelSource(name="resmlp_fmnist").load().model.eval()
    items = [fmnist_train[i][0].unsqueeze(0) for i in range(64)]
    x = torch.stack([fmnist_test[i][0] for i in range(200)])
    return quantize(model, items, "plain_w4a4_p999", log=lambda m: None).model, x


def _gelu_quantizers(model):
    return [h for n, h in get_hook_storage(model).named_hooks() if isinstance(h, AsymmetricQuantizer) and "gelu" in n]


def _ir_logits(model, x):
    compiled = ov.Core().compile_model(convert(model, (1, 1, 28, 28)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.concatenate([compiled(x[i:i + 1].numpy())[0] for i in range(len(x))])


def test_ptq_leaves_every_zero_on_the_grid_and_the_ir_agrees(resmlp_w4a4):
    q, x = resmlp_w4a4
    assert not _off_grid_asymmetric_quantizers(q) and align_zero_points(q) == 0
    with torch.no_grad():
        torch_out = q(x).numpy()
    ir_out = _ir_logits(q, x)
    assert (torch_out.argmax(1) == ir_out.argmax(1)).mean() >= 0.995  # 0.92 before the alignment


def test_an_off_grid_quantizer_is_aligned_or_its_ir_follows_torch(resmlp_w4a4):
    q, x = resmlp_w4a4
    q = copy.deepcopy(q)
    with torch.no_grad():
        for quantizer in _gelu_quantizers(q):  # as NNCF leaves a 4-bit GELU range: low 0.3 step below zero
            quantizer.input_low.copy_(-0.3 * quantizer.input_range / (quantizer.levels - 1))
        assert len(_off_grid_asymmetric_quantizers(q)) == len(_gelu_quantizers(q)) == 6
        torch_out = q(x).numpy()
    # the export gives such a FakeQuantize torch's thresholds: the IR computes what the torch model computes
    assert (_ir_logits(q, x).argmax(1) == torch_out.argmax(1)).mean() >= 0.995
    # the post-pass moves the window onto the grid the export uses instead (same step, zero point 0)
    assert align_zero_points(q) == 6 and not _off_grid_asymmetric_quantizers(q)
    assert all(float(g.input_low.abs().max()) == 0.0 for g in _gelu_quantizers(q))
