"""The committed zoo and the machine-readable CLI contract (`qmlp zoo --json`, `qmlp eval --json`)."""
import json
import subprocess
import sys

import pytest
import timm
import torch

from qmlp_nncf.checkpoint import read_checkpoint
from qmlp_nncf.cli import main
from qmlp_nncf.zoo import list_entries

BASE = {"mixer_fmnist": "mixer", "resmlp_fmnist": "resmlp", "gmlp_fmnist": "gmlp"}


def test_zoo_has_the_three_families_with_small_loadable_checkpoints():
    entries = {e.name: e for e in list_entries()}
    assert {n: entries[n].family for n in BASE if n in entries} == BASE
    for e in entries.values():
        assert e.checkpoint.stat().st_size < 5 * 2**20
        ckpt = read_checkpoint(e.checkpoint)  # torch.load(weights_only=True)
        assert ckpt["arch"] == e.name and ckpt["top1"] == e.top1 and ckpt["test_images"] == 10000
        assert set(ckpt["data_fingerprint"]) == {"train", "test"}
        model = timm.create_model(e.name, pretrained=True)  # the registered cfg points at the zoo file
        assert sum(p.numel() for p in model.parameters()) == e.params
        if e.base is not None:
            assert e.base in entries and entries[e.base].family == e.family


def run_json(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(out[-1])


def test_zoo_json_contract(capsys):
    rc, entries = run_json(["zoo", "--json"], capsys)
    assert rc == 0 and entries
    for e in entries:
        assert {"name", "family", "checkpoint", "params", "top1"} <= set(e)
        assert e["family"] in ("mixer", "resmlp", "gmlp") and 0 < e["top1"] <= 1


def test_eval_json_contract_reproduces_the_reference(capsys, fmnist_test):
    torch.set_num_threads(2)
    entry = next(e for e in list_entries() if e.name == "mixer_fmnist")
    rc, result = run_json(["eval", "--model", "mixer_fmnist", "--json"], capsys)
    assert rc == 0 and result["n"] == 10000
    assert result["top1"] == pytest.approx(entry.top1, abs=1e-4)  # same weights, same images, fp32 eval


def test_quantize_lists_the_recipes(capsys):
    rc, recipes = run_json(["quantize", "--list-recipes", "--json"], capsys)
    assert rc == 0 and {"qmlp_w4a4", "qmlp_w4a4_tuned", "nncf_default_w8a8"} <= set(recipes)
    assert "range" in recipes["qmlp_w4a4_tuned"]
    assert recipes["qmlp_w4a4"].startswith("for Q-MLP (converted) models: ")
    assert recipes["nncf_default_w8a8"].startswith("for any model: ")
    assert recipes["auto:w4a4"].startswith("for any model: ")


def test_recipe_list_says_which_models_each_recipe_is_for(capsys):
    """`qmlp_*` recipes with expects_qmlp are for converted models; the rest and auto:* for any (issue 29)."""
    assert main(["quantize", "--list-recipes"]) == 0
    text = capsys.readouterr().out
    qmlp, _, rest = text.partition("For any model:")
    assert qmlp.startswith("For Q-MLP (converted) models:")
    assert "  qmlp_w4a4: " in qmlp and "  qmlp_w8a8_tuned: " in qmlp and "nncf_default_w8a8" not in qmlp
    assert "  nncf_default_w8a8: " in rest and "  plain_w4a4_p9999: " in rest and "  auto:w4a4: " in rest
    assert "  qmlp_w4a4: " not in rest
    advice = rest.splitlines()[-1]
    assert "Recommended for an unconverted model" in rest and "auto:w4a4" in advice
    # issue 34: on an OpenVINO CPU, W4A8 has W4A4's size and speed: it is recommended first
    assert advice.index("auto:w4a8") < advice.index("auto:w4a4") and "plain_w4a8_ec" in advice


@pytest.mark.parametrize("argv, message", [
    (["quantize", "--recipe", "qmlp_w8a8", "--model", "mixer_fmnist", "--json"], "give --out DIR"),
    (["eval", "--model", "no_such_model", "--json"], "unknown model 'no_such_model'"),
    (["eval", "--checkpoint", "/nonexistent.pth", "--json"], "does not exist"),
    (["eval", "--model", "mixer_fmnist", "--data-dir", "/tmp", "--json"], "does not hold the Fashion-MNIST files"),
    (["eval", "--model", "mixer_fmnist", "--data", "/nonexistent_dir", "--json"], "does not exist"),
])
def test_cli_errors_are_one_json_line_and_exit_nonzero(argv, message, capsys):
    rc, result = run_json(argv, capsys)
    assert rc != 0 and message in result["error"]


def test_console_script_exit_code_on_error():
    proc = subprocess.run([sys.executable, "-m", "qmlp_nncf.cli", "quantize", "--recipe", "nope", "--model",
                           "mixer_fmnist", "--out", "/tmp/qmlp_never_written"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown recipe 'nope'" in proc.stderr


def test_zoo_table_shows_each_models_curve(capsys):
    assert main(["zoo"]) == 0
    captured = capsys.readouterr()  # the table is the result: on stdout (NNCF's output goes to stderr)
    lines = [ln for ln in captured.out.splitlines() if ln.startswith("| ")]
    assert "curve (top-1 % per epoch)" in lines[0]
    for e in list_entries():
        row = next(ln for ln in lines if ln.startswith(f"| {e.name} |"))
        last = (e.extra.get("curve_top1") or [None])[-1]
        assert last is None or row.rstrip(" |").endswith(f"{100 * last:.1f}")
