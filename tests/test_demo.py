"""`make demo` (issue 29): the report leads with what Q-MLP buys and the speed table, carries no targets or
met/MISSED claims, says which numbers are reference numbers, and a log of the demo holds no progress frames."""
import os
import re
import subprocess
import sys

from conftest import REPO

from qmlp_nncf import demo_report as R

TARGET_WORDS = re.compile(r"[Tt]arget|MISSED|\bmet\b|Margin:")


def _rows():
    rows = []
    for variant, model, recipe in R.variants("mixer"):
        rows.append({"family": "mixer", "variant": variant, "model": model, "recipe": recipe,
                     "top1": {"fp32": 0.899, "qmlp_w4a4": 0.8958}.get(recipe, 0.89),
                     "ir_mb": 3.3 if recipe == "fp32" else 0.9, "source": R.REFERENCE_LABEL})
    return rows


def test_what_it_buys_table_compares_with_the_float_model():
    table = R.buys_table(_rows())
    assert table[0][:5] == ["family", "variant", "model", "recipe", "top-1 %"]
    by = {r[1]: r for r in table[1:]}
    assert list(by) == ["float", "stock NNCF int8", "Q-MLP int8", "no-surgery W4A8", "Q-MLP W4A8", "stock 4-bit",
                        "Q-MLP 4-bit"]
    assert by["Q-MLP 4-bit"][2] == "qmlp_mixer_fmnist" and by["stock 4-bit"][2] == "mixer_fmnist"
    assert by["no-surgery W4A8"][2:4] == ["mixer_fmnist", "plain_w4a8_ec"]  # issue 34: the path without surgery
    assert by["Q-MLP 4-bit"][5] == "-0.32" and by["float"][5] == "-" and by["Q-MLP int8"][7] == "0.27x"
    assert not any(TARGET_WORDS.search(c) for r in table for c in r)


def test_reference_numbers_are_the_three_seed_full_test_set_entries():
    from qmlp_nncf.benchmark.accuracy.reference import load_reference

    ref = R.reference_top1()
    both = [e for e in load_reference() if (e["model"], e["recipe"], e["n"], e.get("seeds")) == (
        "qmlp_mixer_fmnist", "qmlp_w4a4", 10000, 3)]
    ptq = [e for e in both if e.get("mode", "ptq") == "ptq"]
    qat = [e for e in both if e.get("mode") == "qat"]
    assert len(ptq) == len(qat) == 1 and ptq[0]["ir_top1"] != qat[0]["ir_top1"]
    assert ref[("qmlp_mixer_fmnist", "qmlp_w4a4")]["ir_top1"] == ptq[0]["ir_top1"]  # ptq, not the qat entry
    assert ("resmlp_fmnist", "nncf_default_w8a8") not in ref  # 1000 images, 1 seed: not a reference row here


def test_speed_table_puts_the_three_paths_against_stock_int8_of_the_unconverted_model():
    def row(model, recipe, hint, mode, **kw):
        return {"model": model, "recipe": recipe, "hint": hint, "mode": mode, "batch": 16,
                "ir_mb": 60.0, "latency_median_ms": 10.0, "fps": 100.0, **kw}
    rows = [row("resmlp_24_224", "fp32", h, m) for h in ("f32", "bf16") for m in ("latency", "throughput")]
    rows += [row("resmlp_24_224", "plain_w4a8_ec", "f32", "throughput", speedup_vs_fp32=2.5,
                 speedup_vs_fp32_range=[2.4, 2.7], speedup_vs_ref=1.02, speedup_vs_ref_range=[1.0, 1.05]),
             row("qmlp_resmlp_24_224", "qmlp_w8a8", "f32", "latency", speedup_vs_base_ref=0.95,
                 speedup_vs_base_ref_range=[0.9, 0.97], speedup_vs_ref=1.1, speedup_vs_ref_range=[1.1, 1.1]),
             row("qmlp_resmlp_24_224", "qmlp_w8a8", "bf16", "latency", speedup_vs_base_fp32_bf16=1.5,
                 speedup_vs_base_fp32_bf16_range=[1.4, 1.6])]
    table = R.speed_table({"rows": rows, "config": {"versus": "nncf_default_w8a8"}})
    assert table[0][:3] == ["IR", "b1 vs nncf_default_w8a8", "b16 vs nncf_default_w8a8"]
    labels = [r[0] for r in table[1:3]]
    assert labels[0].startswith("no-surgery 4-bit") and labels[1].startswith("Q-MLP int8")
    assert table[1][2] == "1.02x [1.00-1.05]" and table[1][4] == "2.50x [2.40-2.70]"
    # the converted model is judged against stock int8 of the model the user has (its base), not of itself
    assert table[2][1] == "0.95x [0.90-0.97]" and table[2][5] == "1.50x [1.40-1.60]"


def test_quick_demo_writes_the_story_into_a_plain_log(tmp_path):
    """Every step of the demo, quick (one family, few images, short measurements), output to a pipe."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "qmlp_nncf.demo", "--quick", "--out", str(tmp_path / "demo")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, timeout=900)
    log = r.stdout.decode()
    assert r.returncode == 0, log[-3000:]
    assert "\r" not in log
    for step in ("zoo", "what it buys", "speed", "activation ranges", "report"):
        assert re.search(rf"\[\d/5\] {step}.*: done in \d+ s", log), step
    assert not TARGET_WORDS.search(log.replace("target_device", ""))
    html = (tmp_path / "demo" / "report.html").read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", html)
    assert titles[0] == "What it buys" and titles[1].startswith("Speed where int8 matters")
    assert "Demo time" in titles and R.REFERENCE_LABEL in html and "measured here" in html
    assert not TARGET_WORDS.search(re.sub(r"<img[^>]*>", "", html))
