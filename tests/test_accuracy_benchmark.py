"""benchmarks/accuracy.py engine: sizes, ablation variants, reference comparison, report, bad input."""
import json
import subprocess
import sys

import pytest
import timm
import torch
from conftest import REPO

import qmlp_nncf.models  # noqa: F401
from qmlp_nncf.benchmark.accuracy import (AccuracyConfig, AccuracyError, BenchModel, QATSettings, ablation_variants,
                                          analytic_mb, check_recipes, compare_reference, main, markdown, plan,
                                          targets_met, update_reference, weight_bits)
from qmlp_nncf.quantization import load_recipe, quantize
from qmlp_nncf.quantization.rules.family_rules import family_rules

torch.set_num_threads(1)


def tiny_resmlp():
    return timm.create_model("resmlp_fmnist", num_blocks=1).eval()


def calibration():
    return [torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(i)) for i in range(8)]


@pytest.mark.parametrize("recipe, expected", [
    ("qmlp_w4a4", {"stem.proj.weight": 8, "blocks.0.linear_tokens.weight": 4, "blocks.0.mlp_channels.fc1.weight": 4,
                   "blocks.0.mlp_channels.fc2.weight": 4, "head.weight": 8}),
    # int4 groups of 32 cannot split the 49-token layer: NNCF falls back to int8 there
    ("qmlp_w4_weight_only", {"stem.proj.weight": 8, "blocks.0.linear_tokens.weight": 8,
                             "blocks.0.mlp_channels.fc1.weight": 4, "blocks.0.mlp_channels.fc2.weight": 4,
                             "head.weight": 8}),
])
def test_weight_bits_and_analytic_size(recipe, expected):
    model = tiny_resmlp()
    quantized = quantize(tiny_resmlp().eval(), calibration(), recipe, subset_size=8, log=lambda m: None).model
    bits = weight_bits(quantized)
    assert bits == expected
    params = dict(model.named_parameters())
    manual = sum(p.numel() * expected.get(n, 32) for n, p in params.items()) / 8 / 2**20
    assert analytic_mb(model, bits) == pytest.approx(manual)
    assert analytic_mb(model, {}) == pytest.approx(sum(p.numel() for p in params.values()) * 4 / 2**20)


def test_ablation_variants_remove_one_rule_each():
    recipe = load_recipe("qmlp_w4a4")
    built_in = family_rules("gmlp")
    variants = ablation_variants(recipe, "gmlp")
    assert variants[0] == ("full recipe", recipe)
    assert len(variants) == 1 + len(built_in) + 1 + len(recipe.rules)
    for i, (label, v) in enumerate(variants[1:1 + len(built_in)]):
        assert label.startswith("- family rule") and not v.family_rules
        assert v.rules == built_in[:i] + built_in[i + 1:] + recipe.rules
    label, v = variants[1 + len(built_in)]
    assert label == "- all family rules" and not v.family_rules and v.rules == recipe.rules
    for i, (label, v) in enumerate(variants[2 + len(built_in):]):
        assert label.startswith("- recipe rule") and v.family_rules and len(v.rules) == len(recipe.rules) - 1
        assert recipe.rules[i] not in v.rules
    assert 'token_mixing_input -> {"bits":4,"range":{"estimator":"mse"}}' in variants[-2][0]


def test_plan_marks_and_skips_mismatched():
    base = BenchModel("mixer_fmnist", "mixer", REPO / "none.pth")
    qmlp = BenchModel("qmlp_mixer_fmnist", "mixer", REPO / "none.pth", base="mixer_fmnist")
    recipes = ["nncf_default_w8a8", "qmlp_w4a4", "qmlp_w4_weight_only"]
    runs = {(m.name, r): mis for m, r, mis in plan([base, qmlp], recipes, matching_only=False)}
    assert runs == {("mixer_fmnist", "nncf_default_w8a8"): False, ("mixer_fmnist", "qmlp_w4a4"): True,
                    ("mixer_fmnist", "qmlp_w4_weight_only"): False, ("qmlp_mixer_fmnist", "nncf_default_w8a8"): False,
                    ("qmlp_mixer_fmnist", "qmlp_w4a4"): False, ("qmlp_mixer_fmnist", "qmlp_w4_weight_only"): False}
    assert ("mixer_fmnist", "qmlp_w4a4") not in {(m.name, r) for m, r, _ in plan([base, qmlp], recipes, True)}


def row(model="m", recipe="r", n=1000, torch_top1=0.9, ir_top1=0.9, mode="ptq", **kw):
    return dict(model=model, recipe=recipe, n=n, torch_top1=torch_top1, ir_top1=ir_top1, mode=mode, **kw)


@pytest.mark.parametrize("recipe, mode, qmlp_model, delta, ir_gap, expected", [
    ("qmlp_w4a4", "ptq", True, -0.4, 0.0, True),
    ("qmlp_w4a4", "qat", True, -0.4, 0.0, False),  # QAT must close the 4-bit gap to 0.3 pt
    ("qmlp_w4a4_tuned", "qat", True, -0.25, 0.0, True),
    ("qmlp_w4a4", "qat", False, -2.0, 0.0, True),  # the 4-bit targets are for Q-MLP models only
    ("qmlp_w8a8", "qat", False, -0.15, 0.0, False),  # other recipes keep their PTQ target after QAT
    ("qmlp_w8a8", "ptq", False, 0.0, 0.3, False),  # IR too far from torch
    ("nncf_default_w8a8", "ptq", False, -5.0, None, None),  # no target applies
])
def test_targets_met(recipe, mode, qmlp_model, delta, ir_gap, expected):
    model = BenchModel("qmlp_m" if qmlp_model else "m", "resmlp", REPO / "none.pth", base="m" if qmlp_model else None)
    r = row(recipe=recipe, mode=mode, delta_torch_pt=delta, ir_vs_torch_pt=ir_gap)
    assert targets_met(r, model) is expected


def test_compare_reference():
    from qmlp_nncf.hardware import cpu_capabilities

    here = cpu_capabilities().vnni
    reference = [{"model": "m", "recipe": "r", "n": 1000, "torch_top1": 0.9, "ir_top1": 0.9, "tolerance": 0.002,
                  "cpu_vnni": here},
                 {"model": "m", "recipe": "other", "n": 1000, "torch_top1": 0.5, "ir_top1": 0.5, "tolerance": 0.0}]
    checks = compare_reference([row(ir_top1=0.903), row(n=10000, torch_top1=0.1)], reference)
    assert [(c["metric"], c["ok"]) for c in checks] == [("torch_top1", True), ("ir_top1", False)]
    assert compare_reference([row(mode="qat")], reference) == []  # only PTQ rows are compared
    no_ir = compare_reference([row(ir_top1=None)], reference)
    assert [c["metric"] for c in no_ir] == ["torch_top1"]
    other_cpu = [dict(reference[0], cpu_vnni=not here)]  # IR numbers from the other kind of int8 kernels
    assert [c["metric"] for c in compare_reference([row(ir_top1=0.903)], other_cpu)] == ["torch_top1"]


def test_update_reference_merges(tmp_path):
    path = tmp_path / "ref.json"
    update_reference(path, [row(torch_top1=0.8), row(recipe="s", n=10000)], 0.004, "cmd")
    path.write_text(json.dumps(json.loads(path.read_text()) | {"targets": {"ir_vs_torch_pt": 0.2}}))
    update_reference(path, [row(torch_top1=0.85), row(mode="qat", seeds=3, torch_top1_sd=0.001)], 0.003, "cmd2")
    data = json.loads(path.read_text())
    assert [(e["recipe"], e["mode"], e["n"], e["seeds"], e["torch_top1"], e["tolerance"]) for e in data["entries"]] == [
        ("s", "ptq", 10000, 1, 0.9, 0.004), ("r", "ptq", 1000, 1, 0.85, 0.003), ("r", "qat", 1000, 3, 0.9, 0.003)]
    assert data["entries"][2]["torch_top1_sd"] == 0.001 and "torch_top1_sd" not in data["entries"][1]
    assert data["targets"] == {"ir_vs_torch_pt": 0.2}  # the targets stay beside the entries
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_markdown():
    floats = [{"model": "m", "reference_top1": 0.9, "top1": 0.91, "analytic_mb": 1.0}]
    rows = [row(recipe="qmlp_w4a4", mismatched=True, calibration_size=300, float_top1=0.91, delta_torch_pt=-1.0,
                delta_ir_pt=-1.0, agreement=0.99, ir_mb=0.3, analytic_mb=0.25, ptq_s=3.0, targets_met=False)]
    table = markdown({"floats": floats, "rows": rows, "notes": ["x"],
                      "margins": [{"model": "m", "recipe": "qmlp_w4a4", "base": "b",
                                   "baseline": "nncf_transformer_w4a4", "margin_pt": 3.5}]})
    assert "| m | qmlp_w4a4* | ptq | 300 | 1 | 90.00 / 91.00 | 90.00 | -1.00 | 90.00 | -1.00 | 99.00 | 0.300 | 0.250 | " \
           "3.0 | MISSED |" in table
    assert "vs nncf_transformer_w4a4 on b: +3.50 pt" in table and "Note: x" in table
    assert "qmlp_w4a4 0.5 (QAT 0.3) on Q-MLP models;" in table and "IR within 0.2 pt of torch." in table
    base = dict(mismatched=False, calibration_size=300, float_top1=0.91, delta_torch_pt=-1.0, delta_ir_pt=-1.0,
                agreement=0.99, ir_mb=0.3, analytic_mb=0.25, ptq_s=3.0, targets_met=False)
    table = markdown({"floats": floats, "rows": [row(recipe="nncf_transformer_w4a4", **base)], "notes": [],
                      "margins": []})
    assert "| baseline |" in table and "MISSED" not in table  # a stock baseline is not a target


def test_auto_vs_hand_compares_with_the_best_other_recipe():
    from qmlp_nncf.benchmark.accuracy import auto_vs_hand

    rows = [row(recipe="auto:w4a4", torch_top1=0.86), row(recipe="qmlp_w4a4", torch_top1=0.84),
            row(recipe="plain_w4a4_p999", torch_top1=0.87), row(recipe="nncf_transformer_w4a4", torch_top1=0.85),
            row(model="other", recipe="auto:w4a4", torch_top1=0.5), row(recipe="auto:w4a4", mode="qat")]
    out = auto_vs_hand(rows)
    assert len(out) == 1
    a = out[0]
    assert a["best_other"] == "plain_w4a4_p999" and a["margin_pt"] == pytest.approx(-1.0)
    assert sorted(a["compared"]) == ["nncf_transformer_w4a4", "plain_w4a4_p999", "qmlp_w4a4"]


@pytest.mark.parametrize("args, message", [
    (["--model", "no_such_model"], "unknown zoo model(s) ['no_such_model']; the zoo has:"),
    (["--recipe", "no_such_recipe"], "unknown recipe(s) ['no_such_recipe']; choose from nncf_default_w8a8"),
    (["--limit", "-1"], "--limit must be >= 0"),
    (["--ablate", "x"], "--ablate MODEL takes exactly one --recipe"),
    (["--ablate", "no_such_model", "--recipe", "qmlp_w4a4"], "unknown zoo model(s) ['no_such_model']"),
    (["--check-reference", "/no/such/ref.json"], "reference file /no/such/ref.json does not exist"),
])
def test_bad_input(args, message, capsys):
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_config_and_recipes():
    with pytest.raises(AccuracyError, match="--calibration-size"):
        AccuracyConfig(calibration_size=0)
    assert check_recipes([]) == sorted(check_recipes([]))
    assert check_recipes(["qmlp_w8a8", "qmlp_w8a8"]) == ["qmlp_w8a8"]


def test_script_help():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--model", "--recipe", "--matching-only", "--limit", "--json", "--ablate", "--qat",
                 "--check-reference", "--update-reference"):
        assert flag in out


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random one-block ResMLP saved as a checkpoint (head re-drawn so predictions vary)."""
    from qmlp_nncf.checkpoint import save_checkpoint
    from qmlp_nncf.export.prepare import reinit_zero_head

    torch.manual_seed(0)  # the same random model whatever ran before (the IR/torch agreement depends on it)
    model = tiny_resmlp()
    reinit_zero_head(model)
    path = tmp_path_factory.mktemp("ckpt") / "resmlp_1block.pth"
    save_checkpoint(path, {"state_dict": model.state_dict(), "arch": "resmlp_fmnist",
                           "model_kwargs": {"num_blocks": 1}})
    return BenchModel("resmlp_1block", "resmlp", path, reference_top1=0.1)


def test_run_end_to_end(tiny_checkpoint, tmp_path):
    from qmlp_nncf.benchmark.accuracy import run

    cfg = AccuracyConfig(recipes=["qmlp_w8a8", "qmlp_w4_weight_only"], limit=64, calibration_size=8,
                         ir_dir=str(tmp_path / "irs"), progress=False)
    result = run(cfg, models=[tiny_checkpoint], log=lambda m: None)
    assert [(r["recipe"], r["mismatched"], r["n"], r["calibration_size"]) for r in result["rows"]] == [
        ("qmlp_w8a8", True, 64, 8), ("qmlp_w4_weight_only", False, 64, 8)]
    f = result["floats"][0]
    for r in result["rows"]:
        assert r["float_top1"] == f["top1"] and r["agreement"] >= 0.9 and 0 < r["ir_mb"] < 1.0
        assert r["delta_torch_pt"] == pytest.approx(100 * (r["torch_top1"] - f["top1"]), abs=2e-3)  # both rounded
        assert r["analytic_mb"] < f["analytic_mb"] / 3
    assert (tmp_path / "irs" / "resmlp_1block.qmlp_w8a8.ptq" / "model.xml").is_file()
    table = markdown(result)
    assert "| resmlp_1block | qmlp_w8a8* | ptq | 8 | 1 | 10.00 / " in table
    json.dumps(result)  # JSON-serialisable as it is


def test_ablate_end_to_end(tiny_checkpoint):
    from qmlp_nncf.benchmark.accuracy import ablate, ablation_markdown

    result = ablate(tiny_checkpoint, "qmlp_w4a4", AccuracyConfig(limit=32, calibration_size=8, progress=False),
                    log=lambda m: None)
    by = {r["variant"]: r for r in result["rows"]}
    assert by["full recipe"]["quantizers_changed"] == 0 and by["full recipe"]["change_vs_full_pt"] == 0
    mse = ',"range":{"estimator":"mse"}}'
    assert by['- recipe rule spatial_gating+weights -> {"bits":4' + mse]["quantizers_changed"] == 0  # no gMLP
    assert by['- recipe rule channel_mixing_input -> {"bits":4' + mse]["quantizers_changed"] == 2  # fc1, fc2 inputs
    assert "| full recipe |" in ablation_markdown(result)
    with pytest.raises(AccuracyError, match="weight-only"):
        ablate(tiny_checkpoint, "qmlp_w4_weight_only", AccuracyConfig(limit=8, progress=False))


def test_script_with_reference_round_trip(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """main(): table on stdout only, --json, --update-reference then --check-reference (pass, then fail)."""
    import qmlp_nncf.zoo
    from qmlp_nncf.zoo import ZooEntry, registry

    entry = ZooEntry(name="resmlp_1block", family="resmlp", params=0, top1=0.1, epochs=0, train_time_s=0,
                     command="test")
    monkeypatch.setattr(qmlp_nncf.zoo, "list_entries", lambda: [entry])
    monkeypatch.setattr(registry, "checkpoint_path", lambda name: tiny_checkpoint.checkpoint)
    ref, out = tmp_path / "ref.json", tmp_path / "out.json"
    args = ["--recipe", "nncf_default_w8a8", "--limit", "32", "--calibration-size", "8", "--no-progress"]
    assert main([*args, "--json", str(out), "--update-reference", str(ref), "--tolerance", "0.001"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("| model | recipe |") and "Statistics collection" not in stdout
    measured = json.loads(out.read_text())["rows"][0]
    entry_ = json.loads(ref.read_text())["entries"][0]
    assert (entry_["torch_top1"], entry_["ir_top1"], entry_["n"]) == (measured["torch_top1"], measured["ir_top1"], 32)
    assert main([*args, "--check-reference", str(ref)]) == 0
    data = json.loads(ref.read_text())
    data["entries"][0]["torch_top1"] += 0.5
    ref.write_text(json.dumps(data))
    assert main([*args, "--check-reference", str(ref)]) == 1
    assert "FAIL resmlp_1block / nncf_default_w8a8 (ptq) n=32 seeds=1 torch_top1" in capsys.readouterr().err


def test_qat_rows(tiny_checkpoint, tmp_path):
    """--qat: a QAT row after the PTQ row (qmlp_nncf.training.qat), none for weight-only recipes."""
    from qmlp_nncf.benchmark.accuracy import run

    cfg = AccuracyConfig(recipes=["qmlp_w8a8", "qmlp_w4_weight_only"], limit=32, calibration_size=8, qat=True,
                         qat_settings=QATSettings(epochs=1, batch_size=16, train_subset=32), export_ir=False,
                         ir_dir=str(tmp_path), progress=False)
    rows = run(cfg, models=[tiny_checkpoint], log=lambda m: None)["rows"]
    assert [(r["recipe"], r["mode"]) for r in rows] == [("qmlp_w8a8", "ptq"), ("qmlp_w8a8", "qat"),
                                                        ("qmlp_w4_weight_only", "ptq")]
    assert rows[1]["qat_s"] > 0 and "ir_top1" not in rows[1]
    assert (tmp_path / "resmlp_1block.qmlp_w8a8.qat-run" / "last.pth").is_file()


def test_ptq_time_benchmark(tmp_path, capsys):
    from qmlp_nncf.benchmark.ptq_time import main as ptq_main

    out = tmp_path / "ptq.json"
    assert ptq_main(["--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--calibration-size", "4", "--threads", "1",
                     "--backend", "torch", "--backend", "openvino", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| mixer_fmnist | qmlp_w8a8 | torch | fashion-mnist train x4 |" in text
    assert "| mixer_fmnist | qmlp_w8a8 | openvino | fashion-mnist train x4 |" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["backend"] for r in rows] == ["torch", "openvino"]
    for row in rows:
        assert row["ptq_s"] > 0 and row["quantizers"] > 10 and row["calibration_size"] == 4
    assert ptq_main(["--model", "mixer_fmnist", "--recipe", "nope", "--calibration-size", "4"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
