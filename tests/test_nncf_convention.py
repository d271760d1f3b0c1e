"""Issue 35: ``qmlp_nncf.quantize`` in ``nncf.quantize``'s calling convention (an ``nncf.Dataset``, a DataLoader,
``subset_size`` and NNCF's keyword arguments), the recipe resolved once, and a library that changes nothing
process-wide when imported or called."""
import json
import os
import subprocess
import sys
import warnings

import nncf
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import REPO
from qmlp_nncf import quantize
from qmlp_nncf.quantization.recipes.recipe import AutoTarget, Recipe, load_recipe, resolve_recipe
from qmlp_nncf.quantization.rules.specs import SpecError
from qmlp_nncf.sources import ModelSource

QUIET = dict(log=lambda m: None)


@pytest.fixture(scope="module")
def model():
    return ModelSource("qmlp_mixer_fmnist").load().model.eval()


def _weights(result) -> dict:
    return {k: v.clone() for k, v in result.model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nncf_dataset_dataloader_and_items_give_the_same_model(model, fmnist_train, one_thread):
    """The first call an NNCF user writes works, and gives the model a list of the same images gives."""
    subset = torch.utils.data.Subset(fmnist_train, range(8))
    items = [subset[i][0].unsqueeze(0) for i in range(8)]
    ref = quantize(model, items, "qmlp_w8a8", **QUIET)
    as_nncf = quantize(model, nncf.Dataset(DataLoader(subset, batch_size=4), lambda item: item[0]), "qmlp_w8a8",
                       subset_size=8, **QUIET)
    as_loader = quantize(model, DataLoader(subset, batch_size=1), "qmlp_w8a8", subset_size=8, **QUIET)
    assert as_nncf.calibration_items == as_loader.calibration_items == 8  # batches of 4 count as 4 images each
    assert _same(_weights(ref), _weights(as_nncf)) and _same(_weights(ref), _weights(as_loader))
    assert as_nncf.report == ref.report


def test_subset_size_and_the_deprecated_calibration_size(model, fmnist_train, one_thread):
    items = [fmnist_train[i][0].unsqueeze(0) for i in range(12)]
    new = quantize(model, items, "qmlp_w8a8", subset_size=6, **QUIET)
    with pytest.warns(DeprecationWarning, match="calibration_size.*deprecated.*subset_size"):
        old = quantize(model, items, "qmlp_w8a8", calibration_size=6, **QUIET)
    assert new.calibration_items == old.calibration_items == 6 and _same(_weights(new), _weights(old))
    with pytest.raises(ValueError, match="subset_size=4 and calibration_size=6 disagree"):
        quantize(model, items, "qmlp_w8a8", subset_size=4, calibration_size=6, **QUIET)
    with pytest.raises(ValueError, match="subset_size must be a positive int"):
        quantize(model, items, "qmlp_w8a8", subset_size=0, **QUIET)
    with pytest.raises(TypeError, match="is not a dataset; give an nncf.Dataset"):
        quantize(model, 42, "qmlp_w8a8", **QUIET)
    with pytest.raises(TypeError, match="make transform_fn return the model's input"):
        quantize(model, nncf.Dataset(items, lambda x: {"x": x}), "qmlp_w8a8", **QUIET)


def test_nncf_keyword_arguments_reach_nncf_quantize(model, fmnist_train, monkeypatch, one_thread):
    seen = []
    real = nncf.quantize

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(nncf, "quantize", spy)
    items = [fmnist_train[i][0].unsqueeze(0) for i in range(4)]
    result = quantize(model, items, "nncf_default_w8a8", model_type=nncf.ModelType.TRANSFORMER,
                      fast_bias_correction=False, target_device=nncf.TargetDevice.CPU, **QUIET)
    kw = seen[-1]
    assert kw["model_type"] == nncf.ModelType.TRANSFORMER and kw["target_device"] == nncf.TargetDevice.CPU
    assert kw["fast_bias_correction"] is None  # NNCF's "off" (the recipe's own setting is on)
    assert result.recipe.nncf.model_type == "transformer" and not result.recipe.nncf.fast_bias_correction
    assert load_recipe("nncf_default_w8a8").nncf.fast_bias_correction  # the recipe itself is untouched


def test_the_recipe_is_resolved_once():
    auto = resolve_recipe("auto:w4a8", target_device="CPU", model_type="transformer", auto_max_minutes=2)
    assert isinstance(auto, AutoTarget) and auto.name == "auto:w4a8" and auto.bits == (4, 8)
    assert auto.finish(load_recipe("qmlp_w4a8")).nncf.model_type == "transformer"
    assert resolve_recipe(auto) == auto  # resolved values pass through unchanged
    recipe = resolve_recipe("plain_w4a8_ec", target_device="CPU_SPR")
    assert isinstance(recipe, Recipe) and recipe.nncf.target_device == "CPU_SPR"
    assert resolve_recipe(recipe) is recipe
    with pytest.raises(SpecError, match="unknown auto target 'w2a2'"):
        resolve_recipe("auto:w2a2")
    with pytest.raises(ValueError, match="needs a time budget > 0"):
        resolve_recipe("auto:w4a4", auto_max_minutes=0)
    with pytest.raises(SpecError, match="model_type: 'cnn' unknown"):
        resolve_recipe("qmlp_w8a8", model_type="cnn")


LIBRARY_USER = r'''
import ctypes, json, logging, os, sys
calls = []
real_cdll = ctypes.CDLL
class Spy:
    def __init__(self, *a, **k):
        self._lib = real_cdll(*a, **k)
    def __getattr__(self, name):
        calls.append(name)
        return getattr(self._lib, name)
ctypes.CDLL = Spy
import rich
before = (rich.get_console().is_terminal, rich.get_console().is_interactive)
import torch
import qmlp_nncf.quantization, qmlp_nncf.benchmark, qmlp_nncf.export
from qmlp_nncf import quantize
from qmlp_nncf.sources import ModelSource
model = ModelSource("qmlp_mixer_fmnist").load().model
quantize(model, [torch.zeros(1, 1, 28, 28)] * 2, "qmlp_w8a8", log=lambda m: None)
after = (rich.get_console().is_terminal, rich.get_console().is_interactive)
print("\nSTATE " + json.dumps({"rich": [before, after], "mallopt": "mallopt" in calls,
      "filters": len(logging.getLogger("torch.utils.cpp_extension").filters)}))
from qmlp_nncf.console import setup_process
setup_process()
print("\nSETUP " + json.dumps({"mallopt": "mallopt" in calls,
      "filters": len(logging.getLogger("torch.utils.cpp_extension").filters)}))
'''


def test_importing_and_calling_the_library_changes_nothing_process_wide(tmp_path):
    """rich's console (FORCE_COLOR), the logging filters and glibc's heap stay as they were until the application
    calls ``console.setup_process()``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "FORCE_COLOR": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LIBRARY_USER], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    lines = {ln.split(" ", 1)[0]: json.loads(ln.split(" ", 1)[1]) for ln in proc.stdout.splitlines()
             if ln.startswith(("STATE ", "SETUP "))}
    assert proc.returncode == 0 and len(lines) == 2, proc.stderr[-2000:]
    before, after = lines["STATE"]["rich"]
    assert before == after and before[0]  # FORCE_COLOR's terminal console, as the user's process set it
    assert not lines["STATE"]["mallopt"] and lines["STATE"]["filters"] == 0
    assert lines["SETUP"]["mallopt"] and lines["SETUP"]["filters"] == 1  # the application's choice


def test_no_deprecation_warning_inside_the_library(model, fmnist_train, one_thread):
    """The library's own callers use subset_size (a user never sees the deprecation from qmlp's code)."""
    from qmlp_nncf.quantization.recipes.choice import RecipeChoice
    from qmlp_nncf.sources import DataSource, calibration_for

    loaded = ModelSource("qmlp_mixer_fmnist").load()
    choice = RecipeChoice.resolve("qmlp_w8a8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        calib = calibration_for(loaded, DataSource(), choice, 4)
        assert len(calib) == 4 and choice.items_wanted(4) == 4
        assert RecipeChoice.resolve("auto:w4a4").items_wanted(8) == 8 + 256
