"""OpenVINO CPU plugin bug (seen on 2026.4.1, AVX-512 VNNI EPYC): a Reduce with keep_dims=False, a per-channel
Multiply and a FakeQuantize are fused and computed wrong. Run: python docs/repro/ov_reduce_fake_quantize.py
(qmlp_nncf works around it in export.openvino_ir.keep_reduced_dims_before_fake_quantize).

Synthetic repro, no torch: x[N,49,128] -> ReduceMean(axis 1) -> Multiply(per-channel s[1,128]) -> FakeQuantize(scalar, 255 levels)
compiled on CPU vs numpy. Variants: without the Multiply; per-tensor s; extra Result on the ReduceMean."""
import numpy as np, openvino as ov
from openvino import opset13 as ops
rng = np.random.default_rng(0)
C = 128
s = rng.uniform(0.1, 2.5, (1, C)).astype(np.float32)
lo, hi = np.float32(-0.8188787), np.float32(0.8124812)
def ref(x, s_):
    m = x.mean(1, dtype=np.float32).astype(np.float32) * s_ if s_ is not None else x.mean(1)
    st = (hi - lo) / 254
    return np.round((np.clip(m, lo, hi) - lo) / st) * st + lo
def build(N, s_, extra=False):
    p = ops.parameter([N, 49, C], np.float32)
    r = ops.reduce_mean(p, ops.constant(np.array([1], np.int64)), False)
    y = ops.multiply(r, ops.constant(s_)) if s_ is not None else r
    c = lambda v: ops.constant(np.array([[v]], np.float32))
    fq = ops.fake_quantize(y, c(lo), c(hi), c(lo), c(hi), 255)
    res = [ops.result(fq)] + ([ops.result(r)] if extra else [])
    return ov.Model(res, [p])
core = ov.Core()
for N in (1, 8, 100, 200):
    x = rng.normal(0, 0.5, (N, 49, C)).astype(np.float32)
    for label, s_, extra in (("ReduceMean->Mul(per-ch)->FQ", s, False), ("  same, extra Result on ReduceMean", s, True),
                             ("ReduceMean->FQ (no Mul)", None, False), ("ReduceMean->Mul(scalar)->FQ", np.full((1, 1), 1.7, np.float32), False)):
        comp = core.compile_model(build(N, s_, extra), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        out = comp(x)[comp.outputs[0]]
        want = ref(x, s_)
        step = (hi - lo) / 254
        d = np.abs(out - want) / step
        print(f"N={N:3d} {label:38s} max diff {d.max():7.2f} steps, frac elems >0.5 step {(d > 0.5).mean():.4f}", flush=True)
