"""The IR computes what the torch model computes, around two export pitfalls: weights on an exact rounding tie
(NNCF's overflow fix puts the stem's on one) and OpenVINO's CPU plugin miscomputing a fused
Reduce -> per-channel Multiply -> FakeQuantize (a pooled head after SmoothQuant)."""
import numpy as np
import openvino as ov
import pytest
import torch
from openvino import opset13 as ops

from qmlp_nncf.export.openvino_ir import convert, keep_reduced_dims_before_fake_quantize
from qmlp_nncf.quantization import quantize

pytestmark = pytest.mark.usefixtures("one_thread")
LOW, HIGH = np.float32(-0.8188787), np.float32(0.8124812)


def _pooled_head(n: int, scale: np.ndarray) -> ov.Model:
    x = ops.parameter([n, 49, scale.shape[1]], np.float32)
    pooled = ops.reduce_mean(x, ops.constant(np.array([1], np.int64)), False)
    bound = [ops.constant(np.array([[v]], np.float32)) for v in (LOW, HIGH, LOW, HIGH)]
    return ov.Model([ops.result(ops.fake_quantize(ops.multiply(pooled, ops.constant(scale)), *bound, 255))], [x])


def test_pooled_head_chain_is_computed_right_with_the_reduced_dims_kept():
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.1, 2.5, (1, 128)).astype(np.float32)
    x = rng.normal(0, 0.5, (8, 49, 128)).astype(np.float32)
    step = (HIGH - LOW) / 254
    want = np.round((np.clip(x.mean(1) * scale, LOW, HIGH) - LOW) / step) * step + LOW
    model = _pooled_head(8, scale)
    assert keep_reduced_dims_before_fake_quantize(model) == 1
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x)[compiled.outputs[0]]
    assert got.shape == want.shape and float(np.abs(got - want).max()) <= step * 1.01  # at most a tie off


def test_stock_transformer_recipe_ir_agrees_with_torch(fmnist_train, fmnist_test):
    """nncf_transformer_w8a8 (overflow fix on the stem, SmoothQuant before the pooled head): 0.97 agreement on
    ResMLP before these fixes, and 0.77 at batch 200."""
    from qmlp_nncf.sources import ModelSource

    model = ModelSource(name="resmlp_fmnist").load().model.eval()
    q = quantize(model, [fmnist_train[i][0].unsqueeze(0) for i in range(64)], "nncf_transformer_w8a8",
                 log=lambda m: None).model
    x = torch.stack([fmnist_test[i][0] for i in range(200)])
    weights = [p.detach().clone() for p in q.parameters()]
    compiled = ov.Core().compile_model(convert(q, (200, 1, 28, 28)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert all(torch.equal(a, b) for a, b in zip(weights, q.parameters()))  # the export restored the weights
    with torch.no_grad():
        torch_out = q(x).numpy()
    ir_out = compiled(x.numpy())[compiled.outputs[0]]
    assert (torch_out.argmax(1) == ir_out.argmax(1)).mean() >= 0.995
