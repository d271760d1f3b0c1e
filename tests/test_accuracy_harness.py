"""The accuracy harness: targets as data, the summary over seeds, the per-family claims, --seeds end to end."""
import json
import statistics

import pytest
import torch

from qmlp_nncf.benchmark.accuracy import (REFERENCE, AccuracyConfig, AccuracyError, BenchModel, Targets, claims,
                                          load_targets, main, markdown, run, summarize, targets_met)

from conftest import REPO

torch.set_num_threads(1)


def row(model="q", recipe="qmlp_w4a4", mode="ptq", seed=0, torch_top1=0.9, **kw):
    return dict(model=model, recipe=recipe, mode=mode, seed=seed, n=1000, torch_top1=torch_top1, analytic_mb=0.5,
                delta_torch_pt=kw.pop("delta_torch_pt", 0.0), mismatched=False, calibration_size=8, ptq_s=1.0, **kw)


def test_the_targets_are_data_beside_the_reference_numbers():
    data = json.loads(REFERENCE.read_text())
    assert data["entries"] and data["targets"]
    t = load_targets()
    assert t.drop_pt["qmlp_w8a8"] == data["targets"]["drop_pt"]["qmlp_w8a8"]
    assert t.claims["margin_min_pt"] == data["targets"]["claims"]["margin_min_pt"]
    assert t.row_limit("qmlp_w4a4", "qat", True) == data["targets"]["qat_drop_pt"]["qmlp_w4a4"]
    assert t.row_limit("qmlp_w4a4", "ptq", False) is None  # Q-MLP-only target on a base model
    with pytest.raises(AccuracyError, match="unknown target key"):
        Targets.from_json({"drop": {}})


def test_targets_come_from_the_file(tmp_path):
    strict = Targets.from_json({"drop_pt": {"qmlp_w8a8": 0.0}})
    model = BenchModel("m", "mixer", REPO / "none.pth")
    assert targets_met(row(recipe="qmlp_w8a8", delta_torch_pt=-0.05), model, strict) is False
    assert targets_met(row(recipe="qmlp_w8a8", delta_torch_pt=-0.05), model) is True  # the repo's 0.1 pt
    assert targets_met(row(recipe="qmlp_w8a8"), model, Targets()) is None  # no targets: none apply


def test_summary_means_and_sds_over_seeds():
    rows = [row(seed=s, torch_top1=t, ir_top1=t + d, ir_vs_torch_pt=100 * d, delta_torch_pt=100 * (t - 0.9))
            for s, (t, d) in enumerate([(0.88, 0.0), (0.89, 0.003), (0.90, -0.001)])]
    rows.append(row(recipe="qmlp_w8a8", torch_top1=0.9))
    models = {"q": BenchModel("q", "mixer", REPO / "none.pth", base="b")}
    s = {r["recipe"]: r for r in summarize(rows, models)}
    w4 = s["qmlp_w4a4"]
    assert w4["seeds"] == 3 and "seed" not in w4
    assert w4["torch_top1"] == pytest.approx(0.89) and w4["torch_top1_sd"] == pytest.approx(0.01, abs=1e-5)
    assert w4["delta_torch_pt"] == pytest.approx(-1.0, abs=1e-3)
    assert w4["ir_vs_torch_pt_worst"] == pytest.approx(0.3)
    assert w4["targets_met"] is False  # mean drop 1.0 > 0.5 pt
    assert s["qmlp_w8a8"]["seeds"] == 1 and s["qmlp_w8a8"]["torch_top1_sd"] == 0.0
    table = markdown({"floats": [{"model": "q", "reference_top1": 0.9, "top1": 0.9, "analytic_mb": 1.0}],
                      "rows": rows, "summary": list(s.values()), "notes": [], "margins": []})
    assert "| q | qmlp_w4a4 | ptq | 8 | 3 | 90.00 / 90.00 | 89.00 ± 1.00 | -1.00 ± 1.00 |" in table


def test_claims_per_family():
    floats = [{"model": "b", "family": "mixer", "base": None}, {"model": "q", "family": "mixer", "base": "b"}]
    rows = [row(model="b", recipe="qmlp_w8a8", delta_torch_pt=-0.05, torch_top1=0.90),
            row(model="b", recipe="nncf_transformer_w4a4", delta_torch_pt=-3.0, torch_top1=0.87),
            row(model="q", recipe="qmlp_w8a8", delta_torch_pt=-0.2, torch_top1=0.90),
            row(model="q", recipe="qmlp_w4a8", delta_torch_pt=-0.4, torch_top1=0.896),
            row(model="q", recipe="qmlp_w4a4", delta_torch_pt=-0.8, torch_top1=0.892),
            row(model="q", recipe="qmlp_w4a4", mode="qat", delta_torch_pt=-0.35, torch_top1=0.8965),
            row(model="q", recipe="plain_w4a4_p999", delta_torch_pt=0.0, torch_top1=0.91)]  # a baseline: not ours
    got = {(c["model"], c["claim"]): c for c in claims(rows, floats)}
    assert set(got) == {("b", "w8a8"), ("q", "w8a8"), ("q", "best_4bit_ptq"), ("q", "margin"), ("q", "best_4bit_qat")}
    assert got[("b", "w8a8")]["ok"] and not got[("q", "w8a8")]["ok"]
    assert got[("q", "best_4bit_ptq")]["recipe"] == "qmlp_w4a8" and got[("q", "best_4bit_ptq")]["ok"]
    assert got[("q", "margin")]["value_pt"] == pytest.approx(2.6) and got[("q", "margin")]["ok"]
    assert got[("q", "best_4bit_qat")]["value_pt"] == pytest.approx(-0.35) and not got[("q", "best_4bit_qat")]["ok"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import timm

    import qmlp_nncf.models  # noqa: F401
    from qmlp_nncf.checkpoint import save_checkpoint
    from qmlp_nncf.export.prepare import reinit_zero_head

    torch.manual_seed(0)
    model = timm.create_model("resmlp_fmnist", num_blocks=1).eval()
    reinit_zero_head(model)
    path = tmp_path_factory.mktemp("ckpt") / "resmlp_1block.pth"
    save_checkpoint(path, {"state_dict": model.state_dict(), "arch": "resmlp_fmnist", "model_kwargs": {"num_blocks": 1}})
    return BenchModel("resmlp_1block", "resmlp", path, reference_top1=0.1)


def test_seeds_repeat_the_calibration_draw(tiny_checkpoint):
    cfg = AccuracyConfig(recipes=["plain_w4a4_minmax"], limit=64, calibration_size=4, seeds=3, export_ir=False,
                         progress=False)
    result = run(cfg, models=[tiny_checkpoint], log=lambda m: None)
    rows = result["rows"]
    assert [r["seed"] for r in rows] == [0, 1, 2]
    (s,) = result["summary"]
    assert s["seeds"] == 3 and s["torch_top1"] == pytest.approx(statistics.fmean(r["torch_top1"] for r in rows),
                                                                abs=1e-5)
    assert s["torch_top1_sd"] == pytest.approx(statistics.stdev(r["torch_top1"] for r in rows), abs=1e-5)
    from qmlp_nncf.benchmark.accuracy import load_float
    from qmlp_nncf.sources import DataSource

    model = load_float(tiny_checkpoint)[0]
    draws = [DataSource().calibration(model, 4, seed).indices for seed in range(3)]
    assert len({tuple(d) for d in draws}) == 3  # each seed draws other calibration images
    json.dumps(result)


def test_seeds_flag(capsys):
    assert main(["--seeds", "0", "--no-progress"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert main(["--ablate", "mixer_fmnist", "--recipe", "qmlp_w4a4", "--seeds", "3", "--no-progress"]) == 2
    assert "no --model, --qat, --seeds" in capsys.readouterr().err
    assert main(["--qat-recipe", "qmlp_w4a4", "--recipe", "qmlp_w4a4", "--qat-distill-weight", "1.5"]) == 2
    assert "QAT distill weight must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert main(["--qat-recipe", "qmlp_w4a4", "--recipe", "qmlp_w4a4", "--qat-lr", "0"]) == 2
    assert "lr (0) must be positive" in capsys.readouterr().err


def test_qat_only_after_the_named_recipes_and_merged_reports(tiny_checkpoint, tmp_path, capsys):
    from qmlp_nncf.benchmark.accuracy import QATSettings, merge

    with pytest.raises(AccuracyError, match="not among the --recipe list"):
        AccuracyConfig(recipes=["qmlp_w8a8"], qat=True, qat_recipes=["qmlp_w4a4"])
    settings = QATSettings(epochs=1, batch_size=16, train_subset=32)
    cfg = AccuracyConfig(recipes=["plain_w4a4_minmax", "qmlp_w8a8"], limit=32, calibration_size=4, export_ir=False,
                         qat=True, qat_recipes=["qmlp_w8a8"], qat_settings=settings, ir_dir=str(tmp_path),
                         progress=False)
    a = run(cfg, models=[tiny_checkpoint], log=lambda m: None)
    assert [(r["recipe"], r["mode"]) for r in a["rows"]] == [("plain_w4a4_minmax", "ptq"), ("qmlp_w8a8", "ptq"),
                                                            ("qmlp_w8a8", "qat")]
    b = json.loads(json.dumps(a))
    for r in b["rows"]:
        r["seed"], r["torch_top1"] = 1, r["torch_top1"] + 0.01
    merged = merge([a, b])
    assert len(merged["rows"]) == 6 and [s["seeds"] for s in merged["summary"]] == [2, 2, 2]
    s = merged["summary"][0]
    assert s["torch_top1"] == pytest.approx(a["rows"][0]["torch_top1"] + 0.005, abs=1e-5)
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    assert main(["--report", str(pa), str(pb), "--json", str(tmp_path / "m.json")]) == 0
    assert "| resmlp_1block | plain_w4a4_minmax | ptq | 4 | 2 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["summary"][0]["seeds"] == 2
    b["command"] = "python benchmarks/accuracy.py --seeds 2 (run b)"
    pb.write_text(json.dumps(b))
    ref = tmp_path / "ref.json"
    assert main(["--report", str(pa), str(pb), "--update-reference", str(ref)]) == 0
    entries = json.loads(ref.read_text())["entries"]  # each entry keeps the command that measured it
    assert {e["command"] for e in entries} == {"python benchmarks/accuracy.py --seeds 2 (run b)"}
    assert main(["--report", str(pa), "--model", "x"]) == 2
    assert "--report merges results measured before" in capsys.readouterr().err
    assert main(["--report", str(tmp_path / "none.json")]) == 2


def test_an_interrupted_run_resumes_from_its_rows(tiny_checkpoint, tmp_path):
    rows_file = tmp_path / "acc.json.rows.jsonl"
    cfg = dict(recipes=["plain_w4a4_minmax", "plain_w4a4_p999"], limit=32, calibration_size=4, seeds=2,
               export_ir=False, progress=False, rows_file=str(rows_file))
    first = run(AccuracyConfig(**cfg), models=[tiny_checkpoint], log=lambda m: None)["rows"]
    lines = rows_file.read_text().splitlines()
    assert [json.loads(ln) for ln in lines] == first  # every row was written as it was measured
    rows_file.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # interrupted while writing the 4th row
    log = []
    again = run(AccuracyConfig(**cfg, resume=True), models=[tiny_checkpoint], log=log.append)["rows"]
    assert sum("reused from" in m for m in log) == 3
    assert [(r["recipe"], r["seed"]) for r in again] == [(r["recipe"], r["seed"]) for r in first]
    assert again[:3] == first[:3] and again[3]["torch_top1"] == first[3]["torch_top1"]  # re-measured, same draw
    fresh = []
    run(AccuracyConfig(**cfg), models=[tiny_checkpoint], log=fresh.append)  # no --resume: measures everything
    assert not any("reused" in m for m in fresh) and len(rows_file.read_text().splitlines()) == 4
    with pytest.raises(AccuracyError, match="give the same --json PATH"):
        AccuracyConfig(resume=True)
