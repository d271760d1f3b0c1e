"""Fusable placement: the same role rule on both backends, and an executed graph that runs in int8 where stock
NNCF's does (the census, read from the compiled model: the same evidence on AVX2, AVX-512 VNNI and AMX)."""
import json

import numpy as np
import openvino as ov
import pytest
import torch

from qmlp_nncf.census import executed_census, float_counts
from qmlp_nncf.quantization import quantize
from qmlp_nncf.quantization.rules.placement import Placement
from qmlp_nncf.quantization.rules.specs import SpecError

SHAPE = (1, 1, 28, 28)
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
QUIET = dict(log=lambda m: None)


def _load(name):
    from qmlp_nncf.sources import ModelSource

    return ModelSource(name=name).load().model.eval()


def _items(dataset, n=16):
    return [dataset[i][0].unsqueeze(0) for i in range(n)]


def _census(ov_model):
    m = ov_model.clone()
    m.reshape(list(SHAPE))
    return executed_census(ov.Core().compile_model(m, "CPU", F32))


@pytest.fixture(scope="module")
def zoo_irs(fmnist_train):
    """qmlp_w8a8 and stock nncf_default_w8a8 IRs of the zoo's Q-MLP Mixer and ResMLP (16 calibration images)."""
    from qmlp_nncf.export.openvino_ir import convert

    items = _items(fmnist_train)
    out = {}
    for name in ("qmlp_mixer_fmnist", "qmlp_resmlp_fmnist"):
        model = _load(name)
        for recipe in ("qmlp_w8a8", "nncf_default_w8a8"):
            result = quantize(model, items, recipe, **QUIET)
            out[name, recipe] = (result, convert(result.model, SHAPE))
    return out


@pytest.mark.parametrize("name", ["qmlp_mixer_fmnist", "qmlp_resmlp_fmnist"])
def test_qmlp_w8a8_runs_no_more_float_layers_than_stock(zoo_irs, name):
    ours = float_counts(_census(zoo_irs[name, "qmlp_w8a8"][1]))
    stock = float_counts(_census(zoo_irs[name, "nncf_default_w8a8"][1]))
    assert ours["element-wise"] <= stock["element-wise"], (ours, stock)
    assert ours["MVN"] <= stock["MVN"] and ours["Concat"] <= stock["Concat"], (ours, stock)
    # the token-mixing Transposes and the group Slices move int8 data (stock moves f32 through all but one)
    assert ours["Transpose"] < stock["Transpose"] and ours["Split"] <= stock["Split"], (ours, stock)


def test_fused_placement_moves_group_inputs_up_and_shares_concat_ranges(zoo_irs):
    result = zoo_irs["qmlp_resmlp_fmnist", "qmlp_w8a8"][0]
    rows = {r["hook"]: r for r in result.report}
    # one input quantizer per block on the LayerNorm output, none after the group slices
    assert not [h for h in rows if "narrow" in h]
    norm1 = [r for h, r in rows.items() if h.startswith("post_hooks.") and "/norm1/" in h]
    assert len(norm1) == 6 and all({"norm_output", "token_mixing_input"} <= set(r["roles"]) for r in norm1)
    # the residual stream (adds and the patch embedding's output): 8-bit symmetric min-max (the family rule)
    residual = [r for h, r in rows.items() if "/add/" in h or h == "post_hooks.stem/proj/conv2d/0__0.0"]
    assert len(residual) == 13 and all(r["symmetric"] and r["bits"] == 8 for r in residual)
    # the token groups' outputs: one range per Concat
    outputs = [r for r in rows.values() if "token_mixing_output" in r["roles"]]
    assert len(outputs) == 24
    by_block = {}
    for r in outputs:
        by_block.setdefault(r["hook"].split("/")[1], set()).add((r["low"], r["high"]))
    assert len(by_block) == 6 and all(len(ranges) == 1 for ranges in by_block.values())


def test_placement_is_the_same_rule_on_the_openvino_backend(zoo_irs, fmnist_train):
    """The IR quantized by NNCF's OpenVINO backend gets the census of the torch path's IR."""
    from qmlp_nncf.export.openvino_ir import convert

    model = _load("qmlp_resmlp_fmnist")
    result = quantize(convert(model, SHAPE), _items(fmnist_train), "qmlp_w8a8", **QUIET)
    assert float_counts(_census(result.model)) == float_counts(_census(zoo_irs["qmlp_resmlp_fmnist", "qmlp_w8a8"][1]))
    roles = [set(r["roles"]) for r in result.report if not r["float"]]
    assert sum("token_mixing_output" in r for r in roles) == 24
    assert sum({"norm_output", "token_mixing_input"} <= r for r in roles) == 6


def test_fused_placement_keeps_the_float_function_and_the_torch_ir_agreement(zoo_irs, fmnist_test):
    x = torch.stack([fmnist_test[i][0] for i in range(200)])
    result, ir = zoo_irs["qmlp_mixer_fmnist", "qmlp_w8a8"]
    m = ir.clone()
    m.reshape([200, *SHAPE[1:]])
    with torch.no_grad():
        ref = result.model(x).argmax(1).numpy()
    out = ov.Core().compile_model(m, "CPU", F32)(x.numpy())[0].argmax(1)
    assert (out == ref).mean() >= 0.97


def test_four_bit_token_inputs_keep_their_group_quantizers(fmnist_train):
    """qmlp_w4a4's 4-bit token inputs keep one range per group (the accuracy Q-MLP's token groups buy); the
    residual stream and the group outputs are still placed for fusion."""
    result = quantize(_load("qmlp_resmlp_fmnist"), _items(fmnist_train), "qmlp_w4a4", **QUIET)
    hooks = [r["hook"] for r in result.report]
    assert sum("narrow" in h for h in hooks) == 24
    assert sum("token_mixing_output" in r["roles"] for r in result.report) == 24


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_q_mlp_specs_on_nncf_default_placement(tmp_path, fmnist_train, backend):
    """A documented custom recipe: Q-MLP's specs on NNCF's default placement, which quantizes LayerNorm's gamma
    per tensor (a per-channel weight spec on a vector: per tensor)."""
    from qmlp_nncf.export.openvino_ir import convert

    path = tmp_path / "default_placement.json"
    path.write_text(json.dumps({"extends": "qmlp_w8a8", "nncf": {"model_type": "default"}}))
    model = _load("qmlp_resmlp_fmnist")
    if backend == "openvino":
        model = convert(model, SHAPE)
    result = quantize(model, _items(fmnist_train, 8), str(path), **QUIET)
    assert result.quantizers > 0
    if backend == "torch":
        norm_weights = [r for r in result.report if {"weights", "norm"} <= set(r["roles"])]
        assert norm_weights and all(not r["per_channel"] for r in norm_weights)


@pytest.mark.parametrize("value, message", [
    ("fast", "placement: 'fast' unknown; choose one of ['per_op', 'fused']"),
    ({"residual": "yes"}, "placement.residual: expected bool"),
    ({"group_input_bits": [2]}, "bit widths are 4 or 8"),
    ({"shared": True}, "unknown key(s) ['shared']"),
])
def test_bad_placement(value, message):
    with pytest.raises(SpecError) as e:
        Placement.from_value(value)
    assert message in str(e.value)


def test_placement_needs_the_post_pass():
    from qmlp_nncf.quantization.recipes.recipe import Recipe

    with pytest.raises(SpecError, match="placement: moving quantizers needs the post-pass"):
        Recipe.from_dict("x", {"recalibrate": False, "placement": "fused"})
    assert Placement.from_value("fused").to_value() == "fused"
    assert Placement.from_value({"residual": True}).to_value()["residual"] is True


def test_placement_keeps_nncf_checkpoints_round_tripping(zoo_irs):
    """Inserted quantizers are ordinary NNCF hooks: get_config / load_from_config rebuild the same model."""
    from nncf.torch import get_config, load_from_config

    result = zoo_irs["qmlp_mixer_fmnist", "qmlp_w8a8"][0]
    fresh = load_from_config(_load("qmlp_mixer_fmnist"), get_config(result.model))
    fresh.load_state_dict(result.model.state_dict())
    x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        assert np.allclose(fresh.eval()(x).numpy(), result.model(x).numpy(), atol=1e-5)


def test_export_takes_a_recipe_file(tmp_path):
    """`qmlp export --recipe FILE.json` and the benchmarks accept what `qmlp quantize --recipe` accepts."""
    from qmlp_nncf.export.prepare import check_recipe

    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"extends": "qmlp_w8a8", "placement": "per_op"}))
    check_recipe(str(path))
    with pytest.raises(ValueError, match="or give the path of a recipe .json file"):
        check_recipe(str(tmp_path / "missing.json"))


def test_export_and_quantize_calibrate_alike(tmp_path):
    """`qmlp export --recipe X` and `qmlp quantize --recipe X` go through one pipeline: the recipe's calibration
    size, the same train items, the same IR (every FakeQuantize's levels and range)."""
    import openvino as ov

    from qmlp_nncf.export.exporter import export_model
    from qmlp_nncf.pipeline import quantize_to_dir
    from qmlp_nncf.quantization.openvino_model import fq_census
    from qmlp_nncf.quantization.recipes.choice import RecipeChoice
    from qmlp_nncf.sources import DataSource, ModelSource

    recipe = tmp_path / "small.json"
    recipe.write_text(json.dumps({"extends": "qmlp_w8a8", "calibration_size": 24}))
    source, data = ModelSource(name="qmlp_resmlp_fmnist"), DataSource()
    run = quantize_to_dir(source.load(), data, RecipeChoice.resolve(str(recipe)), tmp_path / "q", limit=50,
                          log=lambda m: None)
    exported = export_model(source, str(tmp_path / "x"), recipe=str(recipe), data=data)
    core = ov.Core()
    a, b = (fq_census(core.read_model(str(p))) for p in (run.ir, exported.xml))
    assert a and [(r["levels"], r["low"]) for r in a] == [(r["levels"], r["low"]) for r in b]
    assert exported.metadata["calibration"].endswith("x24")


def test_four_bit_qmlp_recipe_on_an_unconverted_model_names_the_alternatives(fmnist_train):
    """Issue 29: qmlp_w4a4 on a model without Q-MLP blocks is the worst 4-bit choice; the note says what to use."""
    notes = []
    quantize(_load("resmlp_fmnist"), _items(fmnist_train, 8), "qmlp_w4a4", log=notes.append)
    note = next(n for n in notes if n.startswith("note: recipe qmlp_w4a4"))
    assert "auto:w4a4" in note and "qmlp convert" in note
    notes.clear()
    quantize(_load("resmlp_fmnist"), _items(fmnist_train, 8), "qmlp_w4a8", log=notes.append)
    assert not any("auto:w4a4" in n for n in notes)
