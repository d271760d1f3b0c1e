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
from qmlp_nncf.quantization.algorithms.error_correction import column_rounder, correct_weights, linear_sums, weight_targets
from qmlp_nncf.quantization.algorithms.reparam import reparameterize
from qmlp_nncf.quantization.recipes.knobs import ErrorCorrection, Reparameterization
from qmlp_nncf.quantization.recipes.recipe import Recipe, load_recipe
from qmlp_nncf.quantization.rules.roles import GraphRoles
from qmlp_nncf.quantization.rules.specs import SpecError

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
    summary = correct_weights(quantized, model, items, roles, ErrorCorrection())
    errors = summary["relative_error"]
    assert summary["by_block"] == "blocks"  # block by block, each Linear after its corrected predecessors
    assert len(errors) == summary["corrected"] == 6 * 3  # the classifier (one row per image) is left as it is
    assert list(summary["left"]) == ["head"] and "96 calibration rows for 128 inputs" in summary["left"]["head"]
    assert all(after <= before + 1e-6 for before, after in errors.values())
    assert np.mean([a for _, a in errors.values()]) < 0.9 * np.mean([b for b, _ in errors.values()])
    modules = dict(quantized.named_modules())
    for t in targets[:-1]:  # GPTQ put the weights on the quantizer's own grid: quantizing them changes nothing
        w = modules[t.module].weight.detach()
        assert torch.allclose(t.quantizer(w), w, atol=1e-5 * float(w.abs().max()))


def test_error_correction_on_a_subset_of_rows_and_items(fmnist_train, one_thread):
    """``rows`` and ``items`` bound its cost on big models; the sums it solves from are still a fair sample."""
    model = _load("resmlp_fmnist")
    items = _items(fmnist_train, 96)
    quantized = quantize(model, items, "plain_w4a4_p999", **QUIET).model
    roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
    group = weight_targets(quantized, roles)[:3]  # block 0: token Linear (128 rows per image), fc1, fc2 (49 each)
    full = linear_sums(quantized, model, group, items, ErrorCorrection(rows=None))
    part = linear_sums(quantized, model, group, items, ErrorCorrection(rows=2000))
    for t in group:
        inputs = full[t.op].h.shape[0]
        kept = float(part[t.op].h[-1, -1])  # the ones column: rows kept
        assert part[t.op].rows == full[t.op].rows == float(full[t.op].h[-1, -1])
        assert max(2000, 8 * inputs) <= kept < 1.1 * max(2000, 8 * inputs)
        # a random subset: its mean Gram matrix is close to the full one
        a, b = part[t.op].h / kept, full[t.op].h / full[t.op].rows
        assert float((a - b).norm() / b.norm()) < 0.1
    summary = correct_weights(quantized, model, items, roles, ErrorCorrection(rows=2000, items=64))
    errors = summary["relative_error"]
    assert np.mean([a for _, a in errors.values()]) < 0.9 * np.mean([b for b, _ in errors.values()])


def test_block_by_block_runs_each_block_as_the_full_forward_does(fmnist_train, one_thread):
    """The cached-input path: a block run alone, with the model's quantizers, computes what it computes inside
    the model's forward (NNCF names ops by their module path, which the runner restores)."""
    from qmlp_nncf.quantization.algorithms.error_correction import BlockRunner, first_block_inputs

    model = _load("gmlp_fmnist")
    items = _items(fmnist_train, 16)
    quantized = quantize(model, items, "plain_w4a4_p999", **QUIET).model
    seen = {}
    handle = quantized.blocks[-1].register_forward_hook(lambda _m, _a, out: seen.setdefault("out", out))
    with torch.no_grad():
        quantized(torch.cat(items))
        handle.remove()
        x = first_block_inputs(quantized, quantized.blocks[0], items, 16)[0]
        plain = x
        runner = BlockRunner(quantized, "blocks")
        for block in quantized.blocks:
            x, plain = runner(block, x), block(plain)
    assert torch.equal(x, seen["out"])
    assert not torch.allclose(plain, seen["out"], atol=1e-3)  # called plainly, the block skips its quantizers


def test_gptq_rounds_on_the_quantizers_grid_without_calling_it(fmnist_train):
    model = _load("mixer_fmnist")
    items = _items(fmnist_train, 16)
    quantized = quantize(model, items, "nncf_transformer_w4a4", **QUIET).model
    targets = weight_targets(quantized, GraphRoles(nncf.build_graph(model, example_input=items[0])))
    modules = dict(quantized.named_modules())
    torch.manual_seed(0)
    for t in targets:
        w = modules[t.module].weight.detach()
        rounder, fast = column_rounder(t.quantizer, w)
        assert fast  # NNCF's arithmetic, not a quantizer call per column
        cols = w[:, torch.randint(0, w.shape[1], (8,))].double() * (1 + 0.3 * torch.randn(w.shape[0], 8).double())
        for col in cols.T:
            ours, theirs = rounder(col), t.quantizer(col[:, None].float()).double()[:, 0]
            assert int(((ours - theirs).abs() > 1e-6).sum()) <= 1  # at most an exact half step rounded the other way


def _ir_agreement(model, x) -> float:
    from qmlp_nncf.export.openvino_ir import convert

    with torch.no_grad():
        torch_out = model(x).numpy()
    compiled = ov.Core().compile_model(convert(model, (1, 1, 28, 28)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ir_out = np.concatenate([compiled(x[i:i + 1].numpy())[0] for i in range(len(x))])
    return float((ir_out.argmax(1) == torch_out.argmax(1)).mean())


def test_a_recipe_with_both_aids_exports_an_ir_as_faithful_as_without(tmp_path, fmnist_train, fmnist_test, one_thread):
    recipe = _recipe(tmp_path, {"extends": "plain_w4a4_p999", "reparameterize": {"strength": 1.0},
                                "error_correction": {"rows": 4096}})
    assert recipe.reparameterize == Reparameterization() and recipe.error_correction.rows == 4096
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
    ({"rows": 0}, "rows must be >= 1"),
    ({"items": "all"}, "items"),
])
def test_bad_error_correction(value, message):
    with pytest.raises(SpecError, match=message):
        Recipe.from_dict("r", {"error_correction": value})


def test_aids_do_not_apply_to_weight_only_compression(tmp_path):
    with pytest.raises(SpecError, match="not to weight-only compression"):
        _recipe(tmp_path, {"extends": "qmlp_w4_weight_only", "error_correction": True})


def test_error_correction_runs_on_an_ir(tmp_path, fmnist_train, fmnist_test, one_thread):
    """Issue 35: `qmlp quantize --ir model.xml --recipe plain_w4a4_ec` corrects the IR's weights on the OpenVINO
    backend: every corrected MatMul's output error falls, the logits on unseen images come closer to the float IR's
    than without the correction, and the weights end compressed; reparameterization stays torch-only."""
    import openvino as ov

    from qmlp_nncf.export.openvino_ir import convert

    ir = convert(_load("resmlp_fmnist"), (1, 1, 28, 28))
    items, test = _items(fmnist_train, 48), torch.cat(_items(fmnist_test, 200))
    aided = quantize(ir, items, "plain_w4a4_ec", **QUIET)
    plain = quantize(ir, items, _recipe(tmp_path, {"extends": "plain_w4a4_ec", "error_correction": False}), **QUIET)
    summary = aided.corrections["error_correction"]
    assert summary["corrected"] >= 12 and summary["streams_recalibrated"] > 0
    assert all(after < before for before, after in summary["relative_error"].values())

    def logits(model):  # the IRs take one image at a time
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return torch.cat([torch.from_numpy(compiled(x[None].numpy())[0]) for x in test])

    reference = logits(ir)
    assert (logits(aided.model) - reference).square().mean() < (logits(plain.model) - reference).square().mean()
    weight_fqs = [op for op in aided.model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
                  and op.input_value(0).get_node().get_type_name() == "Constant"]
    assert not weight_fqs  # compressed after the correction, as nncf.quantize would leave them
    recipe = _recipe(tmp_path, {"extends": "plain_w4a4_p999", "range_tuning": {"steps": 1}})
    with pytest.raises(SpecError, match="range tuning.*torch"):
        quantize(ir, _items(fmnist_train, 4), recipe, **QUIET)


@pytest.mark.parametrize("name", ["resmlp_fmnist", "mixer_fmnist", "gmlp_fmnist"])
def test_reparameterization_on_an_ir_keeps_the_float_function(name, fmnist_train, one_thread):
    """The IR's norm and MatMul constants are rescaled as the torch path rescales the parameters: the same norms
    fold, the float outputs stay (to rounding) and the folded channels' ranges even out."""
    import openvino as ov

    from qmlp_nncf.export.openvino_ir import convert
    from qmlp_nncf.quantization.algorithms.reparam import openvino_backend

    model = _load(name)
    ir = convert(model, (1, 1, 28, 28))
    items = _items(fmnist_train, 16)
    folded, report = openvino_backend.reparameterize(ir, items, Reparameterization())
    torch_report = reparameterize(model, items, Reparameterization())[1]
    assert len(report.folds) == len(torch_report.folds) > 0
    assert all(f.spread_after < f.spread_before for f in report.folds)
    before, after = (ov.Core().compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}) for m in (ir, folded))
    for x in items[:4]:
        a, b = before(x.numpy())[0], after(x.numpy())[0]
        assert np.abs(a - b).max() <= 1e-3 * max(1.0, np.abs(a).max())


def test_the_ablation_recipes_load_and_extend_the_file_beside_them(tmp_path, monkeypatch):
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation"
    monkeypatch.chdir(tmp_path)  # a relative "extends": "x.json" is found beside the recipe, wherever the user is
    recipes = {p.stem: load_recipe(p) for p in sorted(folder.glob("*.json"))}
    assert len(recipes) >= 7
    assert recipes["w4a8_stock_ec"].error_correction == ErrorCorrection()
    assert recipes["w4a8_stock_ec"].weights == recipes["w4a8_stock"].weights
    assert recipes["w4a4_gptq"].error_correction.ridge is None and recipes["w4a4_rp"].error_correction is None
