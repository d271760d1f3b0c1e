"""Issue 34: the fused placement on models that cannot be converted (an Affine ResMLP, a Mixer, a gMLP): the no-surgery
recipes and auto: run no more float layers than stock NNCF int8 (the census: the same evidence on any CPU), and
target_device reaches NNCF."""
import json

import pytest

from qmlp_nncf.quantization import quantize
from qmlp_nncf.quantization.rules.specs import SpecError

SHAPE = (1, 1, 28, 28)
QUIET = dict(log=lambda m: None)


def _load(name):
    from qmlp_nncf.sources import ModelSource

    return ModelSource(name=name).load().model.eval()


def _items(dataset, n=16):
    return [dataset[i][0].unsqueeze(0) for i in range(n)]


def _fewer_or_equal_float_layers(ours: dict, stock: dict):
    for group in ("element-wise", "MVN", "Concat", "Transpose", "Split"):
        assert ours[group] <= stock[group], (group, ours, stock)


def _float_layers(model) -> dict:
    from qmlp_nncf.export.openvino_ir import quantized_census

    return quantized_census(model, SHAPE)["float"]


@pytest.mark.parametrize("name, recipe", [("resmlp_fmnist", "plain_w4a4_ec"), ("mixer_fmnist", "plain_w4a8_ec"),
                                          ("gmlp_fmnist", "plain_w4a4_ec")])
def test_no_surgery_recipes_run_no_more_float_layers_than_stock(fmnist_train, name, recipe):
    """Issue 34: the recipes for models that cannot be converted (an Affine ResMLP, a Mixer, a gMLP) get the fused
    placement: their IR's executed graph keeps no more float element-wise / MVN / Concat / Transpose / Split
    layers than stock nncf_default_w8a8's of the same model, and the residual stream stays 8-bit symmetric."""
    model, items = _load(name), _items(fmnist_train, 8)
    ours = quantize(model, items, recipe, **QUIET)
    stock = quantize(model, items, "nncf_default_w8a8", **QUIET)
    _fewer_or_equal_float_layers(_float_layers(ours.model), _float_layers(stock.model))
    residual = [r for r in ours.report if set(r["roles"]) == {"residual_add"}]
    assert residual and all(r["bits"] == 8 and r["symmetric"] for r in residual)


def test_baselines_keep_the_placement_they_exist_to_show(fmnist_train):
    """plain_w4a4_p999 stays the ONNX Runtime-like placement: Linear inputs only, the residual stream in float."""
    result = quantize(_load("resmlp_fmnist"), _items(fmnist_train, 8), "plain_w4a4_p999", **QUIET)
    assert not [r for r in result.report if "residual_add" in r["roles"]]


def test_auto_recipe_is_fused_and_its_recipe_carries_the_census(tmp_path, fmnist_train):
    """`qmlp quantize --recipe auto:w4a8`: every finish is fused; the saved recipe.json and the run's summary carry
    the census of the IR kept (no more float layers than stock's) and say why the search stopped."""
    from qmlp_nncf.pipeline import quantize_to_dir
    from qmlp_nncf.quantization.recipes.choice import RecipeChoice
    from qmlp_nncf.sources import DataSource, ModelSource

    loaded = ModelSource(name="resmlp_fmnist").load()
    run = quantize_to_dir(loaded, DataSource(), RecipeChoice.resolve("auto:w4a8", auto_max_minutes=0.5),
                          tmp_path / "q", limit=50, calibration_size=16, export=False, log=lambda m: None)
    saved = json.loads((tmp_path / "q" / "recipe.json").read_text())
    assert saved["placement"] == "fused" and run.result.recipe.placement.active
    summary = run.result.summary()["auto"]
    assert saved["census"] == summary["census"] and summary["stopped"]
    stock = quantize(loaded.model, _items(fmnist_train, 8), "nncf_default_w8a8", **QUIET)
    _fewer_or_equal_float_layers(saved["census"]["float"], _float_layers(stock.model))


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_target_device_reaches_nncf(fmnist_train, backend, monkeypatch):
    """Issue 34: target_device goes to nncf.quantize; NNCF's torch backend refuses CPU_SPR, so a torch model is
    quantized for CPU there (the fused placement keeps the residual stream int8), an IR for CPU_SPR as it is."""
    import nncf

    from qmlp_nncf.export.openvino_ir import convert

    seen = []
    real = nncf.quantize
    monkeypatch.setattr(nncf, "quantize", lambda *a, **kw: seen.append(kw.get("target_device")) or real(*a, **kw))
    model = _load("resmlp_fmnist")
    if backend == "openvino":
        model = convert(model, SHAPE)
    result = quantize(model, _items(fmnist_train, 8), "plain_w4a8_ec" if backend == "torch" else "qmlp_w8a8",
                      target_device="CPU_SPR", **QUIET)
    assert result.recipe.nncf.target_device == "CPU_SPR"
    assert seen == [nncf.TargetDevice.CPU if backend == "torch" else nncf.TargetDevice.CPU_SPR]


def test_bad_target_device_is_one_clear_error():
    from qmlp_nncf.quantization.recipes.choice import RecipeChoice

    with pytest.raises(SpecError, match=r"--target-device: 'cpu_spr' unknown; choose one of \['ANY', 'CPU'"):
        RecipeChoice.resolve("plain_w4a8_ec", target_device="cpu_spr")


@pytest.mark.parametrize("name", ["gmlp_fmnist", "resmlp_fmnist"])
def test_fused_placement_on_an_ir(name, fmnist_train, tmp_path):
    """Issue 35: the fused placement on NNCF's OpenVINO backend. An IR computes gMLP's split lengths with integer ops
    (ShapeOf, Add): no quantizer goes on them, and the quantized IR runs no more float layers than stock's."""
    from qmlp_nncf.census import ir_census
    from qmlp_nncf.export.openvino_ir import convert
    from qmlp_nncf.quantization.openvino_model import fake_quantizes

    ir = convert(_load(name), SHAPE)
    recipe = tmp_path / "fused.json"
    recipe.write_text(json.dumps({"extends": "plain_w4a8_ec", "error_correction": False}))
    ours = quantize(ir, _items(fmnist_train, 8), str(recipe), **QUIET)
    assert all(fq.input_value(0).get_element_type().is_real() for fq in fake_quantizes(ours.model))
    stock = quantize(ir, _items(fmnist_train, 8), "nncf_default_w8a8", **QUIET)
    _fewer_or_equal_float_layers(ir_census(ours.model)["float"], ir_census(stock.model)["float"])
