"""Roles, rules, per-op calibration and the NNCF post-pass, on small random models and real images."""
import numpy as np
import openvino as ov
import pytest
import timm
import torch

import qmlp_nncf.models  # noqa: F401
from qmlp_nncf.checkpoint import load_model, quantized_payload, save_checkpoint
from qmlp_nncf.data import calibration_subset
from qmlp_nncf.quantization import QuantizerSpec, Rule, SpecError, list_recipes, load_recipe, quantize
from qmlp_nncf.quantization.rules.calibration import RangeCollector
from qmlp_nncf.quantization.rules.specs import RangeSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def small(name, **kw):
    torch.manual_seed(0)
    model = timm.create_model(name, num_blocks=2, **kw).eval()
    torch.nn.init.normal_(model.head.weight, std=0.05)
    return model


@pytest.fixture(scope="module")
def calib(fmnist_train):
    return calibration_subset(fmnist_train, 16)


def roles_by_hook(q):
    return {r["hook"]: set(r["roles"]) for r in q.report}


QUIET = dict(log=lambda m: None)

EXPECTED_DEFAULT_PLACEMENT = {
    "mixer_fmnist": {
        "pre_hooks.blocks/0/mlp_tokens/fc1/linear/0__1.0": {"weights", "token_mixing"},
        "pre_hooks.blocks/0/mlp_channels/fc2/linear/0__1.0": {"weights", "channel_mixing"},
        "pre_hooks.blocks/0/norm1/layer_norm/0__2.0": {"weights", "norm"},
        "pre_hooks.head/linear/0__1.0": {"weights", "classifier"},
        "pre_hooks.stem/proj/conv2d/0__1.0": {"weights", "patch_embedding"},
        "post_hooks.x__0.0": {"patch_embedding_input"},
        "post_hooks.blocks/0/norm1/layer_norm/0__0.0": {"norm_output", "token_mixing_input"},
        "post_hooks.blocks/0/mlp_tokens/act/gelu/0__0.0": {"activation_output", "token_mixing_input"},
        "post_hooks.blocks/0/norm2/layer_norm/0__0.0": {"norm_output", "channel_mixing_input"},
        "post_hooks.blocks/0/mlp_channels/act/gelu/0__0.0": {"activation_output", "channel_mixing_input"},
        "post_hooks.blocks/0/add/0__0.0": {"residual_add"},
        "post_hooks./mean/0__0.0": {"classifier_input"},
    },
    "resmlp_fmnist": {
        "pre_hooks.blocks/0/linear_tokens/linear/0__1.0": {"weights", "token_mixing"},
        "post_hooks.blocks/0/norm1/addcmul/0__0.0": {"norm_output", "affine_output", "token_mixing_input"},
        "post_hooks.blocks/0/mul/0__0.0": {"residual_add"},
        "pre_hooks.blocks/0/add/1__0.0": {"residual_add"},
        "post_hooks.blocks/0/mlp_channels/act/gelu/0__0.0": {"activation_output", "channel_mixing_input"},
    },
    "gmlp_fmnist": {
        "pre_hooks.blocks/0/mlp_channels/gate/proj/linear/0__1.0": {"weights", "spatial_gating"},
        "post_hooks.blocks/0/mlp_channels/gate/norm/layer_norm/0__0.0": {"norm_output", "token_mixing_input"},
        "post_hooks.blocks/0/mlp_channels/gate/mul/0__0.0": {"spatial_gating_product", "channel_mixing_input"},
        "post_hooks.blocks/0/mlp_channels/gate/proj/linear/0__0.0": {"spatial_gating_input", "token_mixing_output"},
        "post_hooks.blocks/0/norm/layer_norm/0__0.0": {"norm_output", "channel_mixing_input"},
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED_DEFAULT_PLACEMENT))
def test_every_quantizer_gets_its_role(name, calib):
    q = quantize(small(name), calib, "nncf_default_w8a8", **QUIET)
    roles = roles_by_hook(q)
    for hook, expected in EXPECTED_DEFAULT_PLACEMENT[name].items():
        assert roles[hook] == expected, hook
    assert all(roles.values()), [h for h, r in roles.items() if not r]


@pytest.mark.parametrize("name", ["qmlp_mixer_fmnist", "qmlp_resmlp_fmnist", "qmlp_gmlp_fmnist"])
def test_each_token_group_keeps_its_own_4bit_input_quantizer(name, calib):
    q = quantize(small(name), calib, "qmlp_w4a4", **QUIET)
    token_inputs = [r for r in q.report if "token_mixing_input" in r["roles"] and "norm_output" in r["roles"]]
    assert len(token_inputs) == 2 * 4  # 2 blocks x 4 groups, one quantizer each
    assert all(r["bits"] == 4 and not r["symmetric"] for r in token_inputs)
    assert len({r["hook"] for r in token_inputs}) == 8
    assert len({r["calibrated_high"] for r in token_inputs}) == 8  # each calibrated on its own group


def test_w4a4_specs_follow_the_rules(calib):
    q = quantize(small("qmlp_resmlp_fmnist"), calib, "qmlp_w4a4", **QUIET)
    for r in q.report:
        roles = set(r["roles"])
        if roles & {"token_mixing", "channel_mixing"} and "weights" in roles:
            assert (r["bits"], r["symmetric"], r["per_channel"]) == (4, True, True)
        elif roles & {"classifier", "patch_embedding"}:
            assert r["bits"] == 8
        elif roles & {"token_mixing_input", "channel_mixing_input"} and not roles & {"classifier_input"}:
            assert (r["bits"], r["symmetric"], r["range"]["estimator"]) == (4, False, "mse")


def test_per_op_percentile_matches_a_hand_computed_reference(calib):
    model = small("mixer_fmnist")
    rule = Rule.from_dict({"match": ["channel_mixing_input", "norm_output"],
                           "spec": {"symmetric": False, "range": {"estimator": "percentile", "percentile": 99.0}}},
                          "test")
    q = quantize(model, calib, "qmlp_w8a8", extra_rules=(rule,), **QUIET)
    row = next(r for r in q.report if r["hook"] == "post_hooks.blocks/1/norm2/layer_norm/0__0.0")
    seen = []
    handle = model.blocks[1].norm2.register_forward_hook(lambda m, i, o: seen.append(o.detach().double().numpy()))
    with torch.no_grad():
        for x, _ in calib:
            model(x.unsqueeze(0))
    handle.remove()
    low = np.mean([np.percentile(v, 1.0) for v in seen])
    high = np.mean([np.percentile(v, 99.0) for v in seen])
    # rel 1e-6: NNCF's fast bias correction nudges upstream biases of the model being calibrated
    assert row["calibrated_low"] == pytest.approx(low, rel=1e-6)
    assert row["calibrated_high"] == pytest.approx(high, rel=1e-6)
    step = (high - low) / 255
    assert abs(row["low"] - low) <= step and abs(row["high"] - high) <= step  # NNCF's zero-point alignment


def test_range_collector_estimators():
    data = [torch.tensor([[-1.0, 0.0, 3.0]]), torch.tensor([[-2.0, 1.0, 2.0]])]  # two batch-1 items

    def run(spec, batched=False):
        c = RangeCollector(spec)
        for d in [torch.cat(data)] if batched else data:
            c(d)
        return c.range()

    for spec in (QuantizerSpec(symmetric=False), QuantizerSpec(range=RangeSpec("percentile", 90.0)),
                 QuantizerSpec(symmetric=False, range=RangeSpec("mean_min_max"))):
        assert run(spec, batched=True) == pytest.approx(run(spec))  # statistics are per item in a batch

    assert run(QuantizerSpec(symmetric=False)) == (-2.0, 3.0)
    assert run(QuantizerSpec(symmetric=False, range=RangeSpec("mean_min_max"))) == (-1.5, 2.5)
    assert run(QuantizerSpec(symmetric=True)) == (-3.0, 3.0)


def ir_fake_quantize(xml):
    ops = ov.Core().read_model(xml).get_ordered_ops()
    return [op for op in ops if op.get_type_name() == "FakeQuantize"]


def test_specs_are_visible_in_the_openvino_ir(tmp_path, calib):
    from qmlp_nncf.export import export_ir

    q = quantize(small("qmlp_mixer_fmnist"), calib, "qmlp_w4a4", **QUIET)
    ir = export_ir(q.model, tmp_path / "ir", (1, 1, 28, 28))
    fqs = ir_fake_quantize(ir.xml)
    levels = [op.get_attributes()["levels"] for op in fqs]
    active = [r for r in q.report if not r["float"]]
    # activations stay FakeQuantize (levels 16 = 4 bit); quantized weights are folded into int4/int8 constants
    assert levels.count(16) == sum(r["bits"] == 4 and "weights" not in r["roles"] for r in active) > 0
    assert levels.count(256) == sum(r["bits"] == 8 and "weights" not in r["roles"] for r in active)
    int4 = [op for op in ov.Core().read_model(ir.xml).get_ordered_ops()
            if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i4]
    assert len(int4) == sum(r["bits"] == 4 and "weights" in r["roles"] for r in active) > 0

    def consts(op):
        return [op.input_value(i).get_node().get_data().ravel() for i in (1, 2)]

    asym = 0
    for op in fqs:
        if op.get_attributes()["levels"] == 16:
            low, high = consts(op)
            asym += bool(low.size == 1 and low[0] < 0 < high[0] and not np.isclose(-low[0], high[0]))
    assert asym > 0  # affine 4-bit inputs with a true zero point


def test_save_restore_round_trip(tmp_path, calib):
    q = quantize(small("qmlp_mixer_fmnist"), calib, "qmlp_w4a4", **QUIET)
    save_checkpoint(tmp_path / "q.pth", {"state_dict": q.model.state_dict(), "arch": "qmlp_mixer_fmnist",
                                         "model_kwargs": {"num_blocks": 2}, **quantized_payload(q.model)})
    restored, meta = load_model(tmp_path / "q.pth")
    x = torch.stack([calib[i][0] for i in range(8)])
    with torch.no_grad():
        torch.testing.assert_close(restored(x), q.model(x), rtol=0, atol=0)
    assert "nncf_config" in meta


def test_recipes_load_and_bad_recipes_fail():
    assert {"nncf_default_w8a8", "nncf_transformer_w8a8", "nncf_transformer_w4a4", "qmlp_w8a8", "qmlp_w4a8",
            "qmlp_w4a4", "qmlp_w4_weight_only"} <= set(list_recipes())
    for name in list_recipes():
        load_recipe(name)
    with pytest.raises(SpecError, match="unknown recipe 'nope'; available: nncf_default_w8a8"):
        load_recipe("nope")
    with pytest.raises(SpecError, match="bits must be 4 or 8"):
        QuantizerSpec().merged({"bits": 3})
    with pytest.raises(SpecError, match=r"unknown role\(s\) \['tokens'\]"):
        Rule.from_dict({"match": ["tokens"]}, "rules[0]")
    with pytest.raises(SpecError, match="rules\\[0\\].spec.symmetric: expected bool"):
        Rule.from_dict({"match": ["weights"], "spec": {"symmetric": "yes"}}, "rules[0]")


def test_scope_regex_that_matches_nothing_is_an_error(calib):
    rule = Rule.from_dict({"scope": "blocks/9/.*", "spec": {"bits": 4}}, "scope_overrides[0]")
    with pytest.raises(SpecError, match="matches no op"):
        quantize(small("mixer_fmnist"), calib, "qmlp_w8a8", extra_rules=(rule,), **QUIET)


def test_keep_float_rule_removes_quantizers(calib):
    rule = Rule.from_dict({"match": ["classifier_input"], "float": True}, "test")
    q = quantize(small("mixer_fmnist"), calib, "qmlp_w8a8", extra_rules=(rule,), **QUIET)
    floats = [r for r in q.report if r["float"]]
    assert floats and all("classifier_input" in r["roles"] for r in floats)


@pytest.mark.parametrize("n", [1, 2, 7, 6272])
@pytest.mark.parametrize("q", [0.0, 0.001, 0.5, 0.999, 0.9999, 1.0])
def test_tail_quantile_equals_torch_quantile(n, q):
    from qmlp_nncf.quantization.rules.calibration import tail_quantile

    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    assert float(tail_quantile(v, q)) == pytest.approx(float(torch.quantile(v, q)), abs=1e-12)


def test_mse_shrink_beats_every_other_candidate_and_handles_outliers():
    from qmlp_nncf.quantization.rules.calibration import SHRINK_FACTORS, fake_quantize, mse_shrink

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4096, dtype=torch.float64, generator=g)
    x[1] = torch.rand(4096, dtype=torch.float64, generator=g) * 2 - 1  # uniform: the full range is best
    x[2, :8] = 40.0  # a few huge outliers among Gaussian values: clipping them is cheaper at 4 bit
    a = x.abs().amax(dim=1, keepdim=True)
    f = mse_shrink(x, -a, a, 15, dim=1)
    assert f[1] > 0.95 and f[0] < 0.8

    def err(i, factor):
        return float((fake_quantize(x[i], -factor * a[i], factor * a[i], 15) - x[i]).pow(2).sum())

    for i in range(3):
        assert err(i, f[i]) <= min(err(i, c) for c in SHRINK_FACTORS) + 1e-9
        assert err(i, f[i]) < err(i, 1.0) or f[i] == 1.0


def test_mse_estimator_for_weights_and_activations(calib):
    from nncf.torch.function_hook import get_hook_storage

    from qmlp_nncf.quantization.rules.calibration import fake_quantize

    model = small("qmlp_mixer_fmnist")
    mse = {"range": {"estimator": "mse"}}
    rules = tuple(Rule.from_dict(r, "test") for r in (
        {"match": ["weights", "channel_mixing"], "spec": {"bits": 4, **mse}},
        {"match": ["channel_mixing_input"], "spec": {"bits": 4, **mse}}))
    q = quantize(model, calib, "qmlp_w8a8", extra_rules=rules, **QUIET)
    fc1 = model.blocks[0].mlp_channels.fc1.weight.detach()
    hooks = dict(get_hook_storage(q.model).named_hooks())
    wq = hooks["pre_hooks.blocks/0/mlp_channels/fc1/linear/0__1.0"]
    scale = wq.scale.detach().reshape(-1, 1)
    absmax = fc1.abs().amax(dim=1, keepdim=True)
    assert bool((scale <= absmax + 1e-6).all()) and bool((scale < absmax - 1e-6).any())  # shrunk, per channel
    shrunk = (fake_quantize(fc1, -scale, scale, 15) - fc1).pow(2).sum()
    full = (fake_quantize(fc1, -absmax, absmax, 15) - fc1).pow(2).sum()
    assert shrunk < full
    rows = {r["hook"]: r for r in q.report if "channel_mixing_input" in r["roles"] and not r["float"]}
    assert rows and all(r["bits"] == 4 and r["range"]["estimator"] == "mse" for r in rows.values())
    minmax_rule = Rule.from_dict({"match": ["channel_mixing_input"],
                                 "spec": {"bits": 4, "range": {"estimator": "min_max"}}}, "test")
    minmax = quantize(model, calib, "qmlp_w8a8", extra_rules=(minmax_rule,), **QUIET).report
    for r in minmax:  # the mse range lies inside the min-max range of the same data
        if r["hook"] in rows:
            lo, hi = rows[r["hook"]]["calibrated_low"], rows[r["hook"]]["calibrated_high"]
            assert r["calibrated_low"] - 1e-9 <= lo < hi <= r["calibrated_high"] + 1e-9


def test_nncf_global_range_cannot_be_mse():
    from qmlp_nncf.quantization.recipes.recipe import Recipe

    with pytest.raises(SpecError, match=r"recipe r.nncf.range.estimator: NNCF's global estimator is one of"):
        Recipe.from_dict("r", {"nncf": {"range": {"estimator": "mse"}}})


def _int8_weights(xml) -> list[np.ndarray]:
    return [op.get_data() for op in ov.Core().read_model(xml).get_ordered_ops()
            if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]


def test_half_range_weights_are_nncf_overflow_fix_in_the_ir(tmp_path, calib):
    """qmlp_w8a8_overflow_fix: every int8 weight of the IR lies in [-64, 64] (no 16-bit pair sum can saturate on a
    CPU without VNNI), where qmlp_w8a8 uses the full [-127, 127]; torch fake-quant runs at 7-bit weight error."""
    from qmlp_nncf.export import export_ir

    model = small("qmlp_mixer_fmnist")
    x = torch.stack([calib[i][0] for i in range(16)])
    with torch.no_grad():
        ref = model(x)
    peaks, errors = {}, {}
    for recipe in ("qmlp_w8a8", "qmlp_w8a8_overflow_fix"):
        q = quantize(model, calib, recipe, **QUIET)
        weights = _int8_weights(export_ir(q.model, tmp_path / recipe, (1, 1, 28, 28)).xml)
        assert weights
        peaks[recipe] = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
        with torch.no_grad():
            errors[recipe] = float((q.model(x) - ref).abs().mean())
    assert peaks["qmlp_w8a8_overflow_fix"] <= 64 < peaks["qmlp_w8a8"]
    assert errors["qmlp_w8a8"] < errors["qmlp_w8a8_overflow_fix"] < 10 * errors["qmlp_w8a8"]


def test_half_range_composes_and_is_refused_on_activations(calib):
    spec = QuantizerSpec(per_channel=True).merged({"half_range": True})
    assert spec.uses_half_range and str(spec) == "s8/ch/half min_max"
    assert not spec.merged({"bits": 4}).uses_half_range  # a 4-bit rule over it composes: nothing to fix at 4 bit
    assert "half_range" not in QuantizerSpec().to_dict() and spec.to_dict()["half_range"] is True
    with pytest.raises(SpecError, match="activations.half_range: half_range is NNCF's overflow fix for weights"):
        load_recipe_dict({"activations": {"half_range": True}})
    rule = Rule.from_dict({"match": ["channel_mixing_input"], "spec": {"half_range": True}}, "rules[0]")
    with pytest.raises(SpecError, match="half_range applies to weights"):
        quantize(small("qmlp_mixer_fmnist"), calib, "qmlp_w8a8", extra_rules=(rule,), **QUIET)


def load_recipe_dict(d: dict):
    from qmlp_nncf.quantization.recipes.recipe import Recipe

    return Recipe.from_dict("inline", d)
