"""Range tuning: only quantizer ranges (and, if asked, weight rounding) move, the KL to the float model drops."""
import copy
import json
from dataclasses import replace

import nncf
import pytest
import torch
from nncf.torch.function_hook import get_hook_storage

from qmlp_nncf.benchmark.accuracy import load_float, zoo_models
from qmlp_nncf.data import calibration_subset
from qmlp_nncf.quantization import SpecError, load_recipe, quantize
from qmlp_nncf.quantization.algorithms.postpass.torch_quantizers import quantizer_high, quantizer_low
from qmlp_nncf.quantization.algorithms.range_tuning import (RangeTuning, _block_outputs, quantized_weights,
                                                            range_parameters, tune_ranges)
from qmlp_nncf.quantization.rules.roles import GraphRoles

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"log": lambda msg: None}


@pytest.fixture(scope="module")
def resmlp_w4a4(fmnist_train):
    """The zoo Q-MLP ResMLP after plain qmlp_w4a4 PTQ, its float model and 64 calibration images."""
    model, _ = load_float(zoo_models(["qmlp_resmlp_fmnist"], log=lambda m: None)[0])
    calib = calibration_subset(fmnist_train, 64)
    items = [calib[i][0].unsqueeze(0) for i in range(len(calib))]
    return model, quantize(model, calib, "qmlp_w4a4", **QUIET).model, items


def test_tuning_lowers_the_kl_and_moves_only_quantizer_ranges(resmlp_w4a4):
    model, q, items = resmlp_w4a4
    q = copy.deepcopy(q)  # the fixture is shared: the block-scope test must start from the same PTQ model
    ranges = {id(p) for p in range_parameters(q)}
    before = {n: p.detach().clone() for n, p in q.named_parameters()}
    flags = {n: p.requires_grad for n, p in q.named_parameters()}
    result = tune_ranges(q, model, items, RangeTuning(steps=30, lr=2e-3, batch_size=32), log=lambda m: None)
    assert result["kl_after"] < 0.9 * result["kl_before"], result
    moved = {n for n, p in q.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved and all(id(q.get_parameter(n)) in ranges for n in moved)
    assert not q.training and {n: p.requires_grad for n, p in q.named_parameters()} == flags


def test_weight_rounding_picks_a_neighbouring_grid_point_and_leaves_no_hooks(resmlp_w4a4):
    model, q, items = resmlp_w4a4
    q = copy.deepcopy(q)
    roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
    pairs = quantized_weights(q, roles)
    linears = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(pairs) == len(linears) and {w.shape for w, _ in pairs} == {m.weight.shape for m in linears}
    start = {id(w): w.detach().clone() for w, _ in pairs}
    def forward_hooks():
        modules = [h for _, h in get_hook_storage(q).named_hooks()] + list(q.blocks) + list(model.blocks)
        return [len(m._forward_hooks) for m in modules]

    hooks_before = forward_hooks()
    settings = RangeTuning(steps=20, lr=2e-3, batch_size=32, weight_rounding_lr=3e-4, drop_prob=0.5, block_loss=1.0)
    result = tune_ranges(q, model, items, settings, log=lambda m: None, roles=roles)
    assert result["kl_after"] < result["kl_before"], result
    changed_rounding = 0
    with torch.no_grad():
        for w, quantizer in pairs:  # each weight ends on a grid point next to where it started
            scale = quantizer.scale.abs()
            step = scale / quantizer.level_high
            assert torch.allclose(quantizer(w), w, atol=1e-6)
            inside = (start[id(w)].abs() <= scale).expand_as(w)
            assert ((w - start[id(w)]).abs()[inside] < (step + 1e-6).expand_as(w)[inside]).all()
            changed_rounding += int((w != quantizer(start[id(w)])).sum())
    assert changed_rounding > 0
    assert forward_hooks() == hooks_before
    with pytest.raises(ValueError, match="need the model's NNCF graph"):
        tune_ranges(q, model, items, settings, log=lambda m: None)
    with pytest.raises(ValueError, match="block_loss needs a model with a `blocks` sequence.*set block_loss to 0"):
        _block_outputs(torch.nn.Linear(2, 2), [])


def test_tuned_recipe_extends_the_plain_one_and_reports_the_tuned_ranges(fmnist_train):
    plain, tuned = load_recipe("qmlp_w4a4"), load_recipe("qmlp_w4a4_tuned")
    assert tuned.range_tuning.steps == 300 and plain.range_tuning is None
    assert [replace(r, where="") for r in tuned.rules] == [replace(r, where="") for r in plain.rules]
    assert (tuned.nncf, tuned.weights, tuned.activations) == (plain.nncf, plain.weights, plain.activations)

    model, _ = load_float(zoo_models(["qmlp_mixer_fmnist"], log=lambda m: None)[0])
    calib = calibration_subset(fmnist_train, 16)
    q = quantize(model, calib, replace(tuned, range_tuning=RangeTuning(steps=5, batch_size=8)), **QUIET)
    untuned = quantize(model, calib, replace(tuned, range_tuning=None), **QUIET)
    assert q.range_tuning["steps"] == 5 and untuned.range_tuning is None
    hooks = dict(get_hook_storage(q.model).named_hooks())
    rows = [r for r in q.report if not r["float"] and "low" in r]
    assert rows and all((r["low"], r["high"]) == (float(quantizer_low(hooks[r["hook"]])),
                                                  float(quantizer_high(hooks[r["hook"]]))) for r in rows)
    assert [(r["low"], r["high"]) for r in rows] != [(r["low"], r["high"]) for r in untuned.report
                                                     if not r["float"] and "low" in r]


def test_bad_range_tuning_settings_fail(tmp_path):
    with pytest.raises(SpecError, match=r"range_tuning: unknown key\(s\) \['step'\]"):
        RangeTuning.from_dict({"step": 3}, "range_tuning")
    with pytest.raises(SpecError, match=r"range_tuning.lr: must be > 0"):
        RangeTuning.from_dict({"lr": 0}, "range_tuning")
    with pytest.raises(SpecError, match=r"range_tuning.steps: expected int"):
        RangeTuning.from_dict({"steps": 1.5}, "range_tuning")
    with pytest.raises(SpecError, match=r"range_tuning.drop_prob: must be in \[0, 1\), got 1"):
        RangeTuning.from_dict({"drop_prob": 1}, "range_tuning")
    with pytest.raises(SpecError, match=r"range_tuning.weight_rounding_lr: must be >= 0"):
        RangeTuning.from_dict({"weight_rounding_lr": -1e-4}, "range_tuning")
    with pytest.raises(SpecError, match=r"range_tuning.block_loss: expected"):
        RangeTuning.from_dict({"block_loss": "1"}, "range_tuning")
    weight_only = {"extends": "qmlp_w4_weight_only", "range_tuning": {}}
    (tmp_path / "wo.json").write_text(json.dumps(weight_only))
    with pytest.raises(SpecError, match="weight-only compression has no quantizer ranges"):
        load_recipe(tmp_path / "wo.json")
    (tmp_path / "a.json").write_text(json.dumps({"extends": str(tmp_path / "b.json")}))
    (tmp_path / "b.json").write_text(json.dumps({"extends": str(tmp_path / "a.json")}))
    with pytest.raises(SpecError, match="is a cycle"):
        load_recipe(tmp_path / "a.json")
    (tmp_path / "c.json").write_text(json.dumps({"extends": "qmlp_w9a9"}))
    with pytest.raises(SpecError, match="unknown recipe 'qmlp_w9a9'"):
        load_recipe(tmp_path / "c.json")


def test_block_scope_fits_each_block_from_cached_inputs(resmlp_w4a4):
    """scope "block": each block's quantizers (and weight rounding) fit that block's float output in turn; only
    the quantizers move, every block's output error and the KL fall, and no hook is left behind."""
    model, q, items = resmlp_w4a4
    q = copy.deepcopy(q)
    roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
    ranges = {id(p) for p in range_parameters(q)} | {id(w) for w, _ in quantized_weights(q, roles)}
    before = {n: p.detach().clone() for n, p in q.named_parameters()}
    x = torch.cat(items[:32])

    def block_errors():
        outs = {}
        hooks = [b.register_forward_hook(lambda _m, _a, o, i=i, k=k: outs.setdefault((k, i), o))
                 for k, net in (("q", q), ("f", model)) for i, b in enumerate(net.blocks)]
        with torch.no_grad():
            q(x), model(x)
        for h in hooks:
            h.remove()
        return [float((outs["q", i] - outs["f", i]).square().mean() / outs["f", i].square().mean())
                for i in range(len(q.blocks))]

    start = block_errors()
    settings = RangeTuning(steps=15, lr=2e-3, batch_size=16, weight_rounding_lr=3e-4, drop_prob=0.5, scope="block")
    result = tune_ranges(q, model, items, settings, log=lambda m: None, roles=roles)
    assert result["scope"] == "block" and result["kl_after"] < result["kl_before"], result
    assert sum(block_errors()) < sum(start)
    moved = {n for n, p in q.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved and all(id(q.get_parameter(n)) in ranges for n in moved)
    assert all(not h._forward_hooks for _, h in get_hook_storage(q).named_hooks())


def test_block_scope_settings():
    assert RangeTuning.from_dict({"scope": "block"}, "r").scope == "block"
    with pytest.raises(SpecError, match=r"r.scope: 'blocks' unknown; choose one of \['model', 'block'\]"):
        RangeTuning.from_dict({"scope": "blocks"}, "r")
    with pytest.raises(SpecError, match="each block fits its own output already; drop block_loss"):
        RangeTuning.from_dict({"scope": "block", "block_loss": 1.0}, "r")
