"""4-bit PTQ without surgery: per-channel reparameterization of norm outputs (RepQ-ViT) and weight error correction
(ERQ / GPTQ), on the zoo's unconverted models."""
import copy
import json

import nncf
import numpy as np
import openvino as ov
import pytest
import torch

from qmlp_nncf.quantization import quantize
from qmlp_nncf.quantization.error_correction import ErrorCorrection, correct_weights, weight_targets
from qmlp_nncf.quantization.recipes import Recipe, load_recipe
from qmlp_nncf.quantization.reparam import Reparameterization, reparameterize
from qmlp_nncf.quantization.roles import GraphRoles
from qmlp_nncf.quantization.specs import SpecError

QUIET = dict(log=lambda m: None)


def _load(name):
    from qmlp_nncf.sources import ModelSource

    return ModelSource(name=name).load().model.eval()


def _recipe(tmp_path, data: dict) -> Recipe:
    path = tmp_path / "aided.json"
    path.write_text(json.dumps(data))
    return load_recipe(str(path))


def _items(dataset, n=32, start=0):
    return [dataset[i][0].unsqueeze(0) for i in range(start, start + n)]


@pytest.mark.parametrize("name", ["resmlp_fmnist", "mixer_fmnist", "gmlp_fmnist"])
def test_reparameterization_keeps_the_float_function_and_equalises_the_channels(name, fmnist_train, one_thread):
    model = _load(name)
    before = copy.deepcopy(model.state_dict())
    items = _items(fmnist_train)
    folded, report = reparameterize(model, items, Reparameterization())
    x = torch.cat(_items(fmnist_train, 16, start=100))  # other images than the ones the ranges came from
    with torch.no_grad():
        a, b = model(x), folded(x)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-5
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the input model is untouched
    assert len(report.folds) == 6  # every channel-mixing input
    assert all(f.spread_before > 1.2 and f.spread_after == pytest.approx(1.0, abs=1e-4) for f in report.folds)
    # a norm read through a transpose (the token branch) cannot move its scales into the token Linear
    assert report.skipped and all("swap" in why or "Linears" in why or "affine" in why
                                  for why in report.skipped.values())
    half = Reparameterization(strength=0.5)
    partial = reparameterize(model, items, half)[1]
    assert all(1.0 < f.spread_after < f.spread_before for f in partial.folds)


def test_error_correction_lowers_each_linears_output_error_on_the_grid(fmnist_train, one_thread):
    model = _load("resmlp_fmnist")
    items = _items(fmnist_train, 96)  # 96 x 49 tokens: enough rows for every Linear of the blocks (8 per input)
    result = quantize(model, items, "plain_w4a4_p999", **QUIET)
    quantized = result.model
    roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
    targets = weight_targets(quantized, roles)
    assert len(targets) == 6 * 3 + 1  # every Linear in the 6 blocks (token, fc1, fc2), and the classifier
    summary = correct_weights(quantized, model, items, roles, ErrorCorrection(stages=2))
    errors = summary["relative_error"]
    assert len(errors) == len(targets)
    assert all(after <= before + 1e-6 for before, after in errors.values())
    assert summary["corrected"] == 6 * 3  # the classifier (one row per image) is left as it is
    assert errors["head"][0] == errors["head"][1]
    assert np.mean([a for _, a in errors.values()]) < 0.9 * np.mean([b for b, _ in errors.values()])
    modules = dict(quantized.named_modules())
    for t in targets[:-1]:  # GPTQ put the weights on the quantizer's own grid: quantizing them changes nothing
        w = modules[t.module].weight.detach()
        assert torch.allclose(t.quantizer(w), w, atol=1e-5 * float(w.abs().max()))


def _ir_agreement(model, x) -> float:
    from qmlp_nncf.export.openvino_ir import convert

    with torch.no_grad():
        torch_out = model(x).numpy()
    compiled = ov.Core().compile_model(convert(model, (1, 1, 28, 28)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ir_out = np.concatenate([compiled(x[i:i + 1].numpy())[0] for i in range(len(x))])
    return float((ir_out.argmax(1) == torch_out.argmax(1)).mean())


def test_a_recipe_with_both_aids_exports_an_ir_as_faithful_as_without(tmp_path, fmnist_train, fmnist_test, one_thread):
    recipe = _recipe(tmp_path, {"extends": "plain_w4a4_p999", "reparameterize": {"strength": 1.0},
                                "error_correction": {"stages": 2}})
    assert recipe.reparameterize == Reparameterization() and recipe.error_correction.stages == 2
    assert load_recipe("plain_w4a4_p999").activations == recipe.activations
    model, items = _load("resmlp_fmnist"), _items(fmnist_train, 48)
    aided = quantize(model, items, recipe, **QUIET)
    summary = aided.summary()
    assert len(summary["reparameterization"]["folded"]) == 6 and summary["error_correction"]["linears"] == 19
    plain = quantize(model, items, "plain_w4a4_p999", **QUIET)
    # the IR computes what the torch model computes as well as it does without the aids (4-bit activations round
    # differently on a few images in either case)
    x = torch.cat(_items(fmnist_test, 256))
    assert _ir_agreement(aided.model, x) >= _ir_agreement(plain.model, x) - 0.03


@pytest.mark.parametrize("value, message", [
    ({"strength": 2}, "strength must be in [0, 1]"),
    ({"strenght": 1}, "unknown key"),
    ("yes", "expected dict"),
])
def test_bad_reparameterize(value, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Recipe.from_dict("r", {"reparameterize": value})


@pytest.mark.parametrize("value, message", [
    ({"rounding": "stochastic"}, "unknown; choose one of"),
    ({"ridge": -1}, "ridge must be > 0"),
    ({"stages": 0}, "stages must be >= 1"),
    ({"damp": 2}, "damp must be in"),
])
def test_bad_error_correction(value, message):
    with pytest.raises(SpecError, match=message):
        Recipe.from_dict("r", {"error_correction": value})


def test_aids_do_not_apply_to_weight_only_compression(tmp_path):
    with pytest.raises(SpecError, match="not to weight-only compression"):
        _recipe(tmp_path, {"extends": "qmlp_w4_weight_only", "error_correction": True})


def test_aids_are_torch_only_on_an_ir(tmp_path, fmnist_train):
    from qmlp_nncf.export.openvino_ir import convert

    ir = convert(_load("mixer_fmnist"), (1, 1, 28, 28))
    recipe = _recipe(tmp_path, {"extends": "plain_w4a4_p999", "error_correction": True})
    with pytest.raises(SpecError, match="torch"):
        quantize(ir, _items(fmnist_train, 4), recipe, **QUIET)
