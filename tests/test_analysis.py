"""``qmlp analyze`` and ``recipe="auto:..."``: statistics against numpy, sensitivities that must come out small
or large, the report files, the suggested recipe, and bad arguments."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO


# ---------------------------------------------------------------- statistics on known tensors
def test_site_stats_match_numpy_and_the_range_collector():
    from qmlp_nncf.quantization.algorithms.probe import SiteStats, activation_variants
    from qmlp_nncf.quantization.rules.calibration import RangeCollector

    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 49, 32, generator=g) ** 3 + 0.5 for _ in range(3)]
    stats = SiteStats()
    for b in batches:
        stats.observe(b)
    x = torch.cat(batches).numpy()
    per_item = x.reshape(len(x), -1).astype(np.float64)
    s = stats.summary()
    assert s["min"] == pytest.approx(x.min()) and s["max"] == pytest.approx(x.max())
    for p in (99.0, 99.9, 99.99):
        want = np.mean([np.percentile(np.abs(r), p) for r in per_item])
        assert s[f"p{p:g}"] == pytest.approx(want, rel=1e-9)
    assert s["frac_negative"] == pytest.approx(float((x < 0).mean()))
    cmax = np.abs(x).max(axis=(0, 1))
    assert s["channel_spread"] == pytest.approx(cmax.max() / np.median(cmax), rel=1e-6)
    assert s["max_to_p99.99"] == pytest.approx(np.abs(x).max() / s["p99.99"])
    # every spec's range from the statistics is what RangeCollector computes observing the same batches
    for bits in (4, 8):
        for spec in activation_variants(bits):
            rc = RangeCollector(spec)
            for b in batches:
                rc(b)
            assert stats.range(spec) == pytest.approx(rc.range(), rel=1e-12), spec


# ---------------------------------------------------------------- probe and sensitivity on a zoo model
@pytest.fixture(scope="module")
def probe():
    from qmlp_nncf.analysis.analyze import build_probe
    from qmlp_nncf.sources import DataSource, ModelSource

    torch.set_num_threads(1)
    model = ModelSource("qmlp_mixer_fmnist").load().model
    return build_probe(model, DataSource("fashion-mnist"), 32, 64, 0, log=lambda m: None)


def test_probe_with_every_site_off_is_the_float_model(probe):
    with torch.no_grad():
        assert torch.equal(probe.model_float(probe.eval_x[:32]), probe.model(probe.eval_x[:32]))
    m = probe.evaluate({})
    assert m.kl == pytest.approx(0.0, abs=1e-12) and m.agreement == 1.0


def test_sensitivity_of_harmless_and_harmful_sites(probe):
    from qmlp_nncf.quantization.rules.specs import QuantizerSpec, RangeSpec

    relu6 = [s for s in probe.sites if "activation_output" in s.roles and not s.is_weight]
    residual = [s for s in probe.sites if s.roles == {"residual_add"}]
    assert relu6 and residual
    eight = QuantizerSpec(8, False, False, RangeSpec("min_max"))
    harmless = probe.evaluate({relu6[0].hook_name: eight})
    assert harmless.kl < 1e-3 and harmless.agreement >= 0.95 and harmless.sqnr_db > 25
    four = QuantizerSpec(4, True, False, RangeSpec("min_max"))
    harmful = probe.evaluate({s.hook_name: four for s in residual})
    assert harmful.kl > 30 * harmless.kl and harmful.sqnr_db < harmless.sqnr_db - 10


@pytest.mark.slow
def test_sweep_ranks_groups_and_respects_the_budget(probe):
    from qmlp_nncf.analysis.sensitivity import sweep

    sens = sweep(probe, max_minutes=5, per_site=False)
    assert sens.complete and not sens.sites
    kls = [r.best4_metrics()["kl"] for r in sens.groups]
    assert kls == sorted(kls, reverse=True)
    assert sens.groups[0].name == "residual_add"  # the residual stream at 4 bit is the known-bad one
    assert all(r.reverse is not None for r in sens.groups)
    stopped = sweep(probe, max_minutes=1e-6, per_site=True)
    assert not stopped.complete


# ---------------------------------------------------------------- the suggested recipe
def test_auto_recipe_is_a_valid_recipe_and_quantize_installs_it(probe, tmp_path):
    from qmlp_nncf.quantization import load_recipe, quantize
    from qmlp_nncf.quantization.algorithms.auto import search
    from qmlp_nncf.quantization.algorithms.probe import compare

    result = search(probe, "w4a4", max_minutes=0.2)
    path = tmp_path / "auto.json"
    path.write_text(json.dumps(result.recipe_json))
    recipe = load_recipe(str(path))
    from dataclasses import replace

    from qmlp_nncf.quantization.rules.placement import Placement
    from qmlp_nncf.sources import DataSource

    assert recipe.placement.active  # issue 34: an auto: recipe is fused (tests/test_placement.py checks that IR)
    calib = DataSource("fashion-mnist").calibration(probe.model_float, probe.calibration_items)  # the probe's items
    # on NNCF's own placement, which the probe searched on, quantize builds what the probe measured
    q = quantize(probe.model_float, calib, replace(recipe, placement=Placement()), log=lambda m: None)
    # every Linear inside the blocks is 4-bit (weights and inputs); stem and head 8-bit
    for d in q.report:
        roles = set(d["roles"])
        if roles & {"token_mixing", "channel_mixing", "spatial_gating"} or roles & {"token_mixing_input",
                                                                                     "channel_mixing_input"}:
            assert d["bits"] == 4, d
        if roles & {"classifier", "patch_embedding", "classifier_input", "patch_embedding_input"}:
            assert d["bits"] == 8, d
    # each quantizer got the spec the search chose for its tensor
    chosen = {h: s for h, s in result.config.items()}
    matched = 0
    for d in q.report:
        spec = chosen.get(d["hook"])
        if spec is not None:
            matched += 1
            assert (d["bits"], d["symmetric"], d["range"]) == (spec.bits, spec.symmetric, spec.to_dict()["range"])
    assert matched >= 0.9 * len(q.report)
    # and what the probe measured is what quantize built (same items, same quantizers)
    with torch.no_grad():
        m = compare(probe.float_logits, q.model(probe.eval_x), probe.labels)
    assert m.kl == pytest.approx(result.metrics.kl, rel=0.05, abs=1e-4)


def test_auto_finish_keeps_to_its_time_budget(probe):
    """Finishes that would end after the deadline are left out, the written recipes and the bias-correction
    finishes before the error-correction aids (which pay most), and the result names them; the search scores on
    fewer items where the model is too slow for the budget."""
    import time

    import nncf

    from qmlp_nncf.quantization.algorithms.auto import (AUTO_AIDS, AUTO_CANDIDATES, AUTO_FINISHES, EVAL_ITEMS,
                                                        MIN_EVAL_ITEMS, choose_finish, eval_items_for, search)
    from qmlp_nncf.quantization.algorithms.postpass.algorithm import post_training
    from qmlp_nncf.quantization.algorithms.postpass.torch_backend import TorchBackend
    from qmlp_nncf.quantization.ptq import calibration_items
    from qmlp_nncf.quantization.rules.roles import GraphRoles
    from qmlp_nncf.sources import DataSource

    model = probe.model_float
    items = calibration_items(DataSource("fashion-mnist").calibration(model, 32), 32)
    assert eval_items_for(model, items, 1e-6) == MIN_EVAL_ITEMS and eval_items_for(model, items, 1e9) == EVAL_ITEMS
    result = search(probe, "w4a4", max_minutes=0.02)
    roles = GraphRoles(nncf.build_graph(model, example_input=items[0]))
    quiet = lambda m: None  # noqa: E731
    as_searched = post_training(TorchBackend(roles), model, items, result.recipe, "mixer", None, quiet)
    aids = [f"as searched + {a}" for a in AUTO_AIDS["w4a4"]]
    bases = [*AUTO_FINISHES, *AUTO_CANDIDATES["w4a4"]]
    late, kept = choose_finish(model, items, result, result.recipe, as_searched, roles, "mixer", log=quiet,
                               deadline=time.time() - 1, seconds=1.0)
    assert kept.label == "as searched" and late.finish["skipped"] == bases + aids and list(late.finish["kl"]) == [
        "as searched"]
    # room for the two aids (2 x 2 x 1000 s estimated) but not for a base with them reserved (1000 + 4000 s)
    tight, kept = choose_finish(model, items, result, result.recipe, as_searched, roles, "mixer", log=quiet,
                                deadline=time.time() + 4500, seconds=1000.0)
    assert tight.finish["skipped"] == bases and list(tight.finish["kl"]) == ["as searched", *aids]
    assert kept.label in tight.finish["kl"]


def test_auto_target_errors():
    from qmlp_nncf.quantization import quantize
    from qmlp_nncf.quantization.rules.specs import SpecError

    with pytest.raises(SpecError, match="auto:w4a4"):
        quantize(torch.nn.Linear(2, 2), [torch.zeros(1, 2)], "auto:w2a2")
    with pytest.raises(ValueError, match=r"auto:w4a4 needs a time budget > 0 \(--max-minutes.*got 0"):
        quantize(torch.nn.Linear(2, 2), [torch.zeros(1, 2)], "auto:w4a4", auto_max_minutes=0)


# ---------------------------------------------------------------- the report, through the CLI
def _run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "qmlp_nncf", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("suggest", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_analyze_writes_the_report_and_a_recipe_quantize_accepts(tmp_path, suggest):
    from PIL import Image

    out, recipe = tmp_path / "report", tmp_path / "suggested.json"
    r = _run("analyze", "--model", "qmlp_resmlp_fmnist", "--compare", "resmlp_fmnist", "--out", str(out),
             *(["--suggest-recipe", str(recipe)] if suggest else ["--no-suggest"]), "--calibration-size", "24",
             "--eval-size", "48", "--max-minutes", "0.2", "--no-per-site", "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["most_sensitive_groups"] and ("suggestion_heldout" in summary) == suggest
    for name in ("report.html", "report.md", "analysis.json", "range_by_depth.png", "sensitivity_groups.png",
                 "histograms.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        with Image.open(png) as im:
            im.verify()
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for png in out.glob("*.png"):
        assert f'data-file="{png.name}"' in html and f"({png.name})" in md
    assert html.count("data:image/png;base64,") == len(list(out.glob("*.png")))
    assert not list(tmp_path.glob(".report.tmp-*"))
    data = json.loads((out / "analysis.json").read_text())
    assert data["compare"]["model"] and data["ranges"]
    # the channel-mixing inputs' spread before / after reparameterization (a Q-MLP ResMLP has 6 such norms)
    folded = data["reparameterization"]["folded"]
    assert len(folded) == 6 and all(f["spread_after"] < f["spread_before"] for f in folded)
    assert "before and after reparameterization" in html
    if not suggest:
        return
    # the recipe is valid input for qmlp quantize (`--recipe FILE` loads it with load_recipe)
    from qmlp_nncf.quantization import load_recipe, quantize
    from qmlp_nncf.sources import DataSource, ModelSource

    loaded = load_recipe(str(recipe))
    assert loaded.name == "suggested" and loaded.rules
    model = ModelSource("qmlp_resmlp_fmnist").load().model
    q = quantize(model, DataSource().calibration(model, 16), loaded, log=lambda m: None)
    assert q.quantizers > 0 and any(d["bits"] == 4 for d in q.report)


@pytest.mark.parametrize("args, message", [
    (["--model", "resmlp_fmnist"], "--out DIR"),
    (["--model", "resmlp_fmnist", "--out", "X", "--compare", "no_such_model_xyz"], "no_such_model_xyz"),
])
def test_analyze_bad_arguments(args, message, tmp_path):
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    r = _run("analyze", *args, "--threads", "1", timeout=300)
    assert r.returncode == 2 and message in r.stderr, r.stderr[-1500:]
    assert not (tmp_path / "X").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"max_minutes": 0}, "--max-minutes"),
    ({"eval_size": 70000}, "train split has"),
    ({"eval_size": 0}, "--eval-size"),
    ({"suggest": None, "suggest_path": "x.json"}, "needs a target"),
])
def test_analyze_bad_values(kwargs, message, tmp_path):
    from qmlp_nncf.analysis import analyze
    from qmlp_nncf.sources import DataSource, ModelSource

    model = ModelSource("resmlp_fmnist").load().model
    with pytest.raises(ValueError, match=message):
        analyze(model, DataSource("fashion-mnist"), tmp_path / "out", **kwargs, log=lambda m: None)
    assert not (tmp_path / "out").exists()
