"""Quantizing OpenVINO models directly: one role detector for both backends, the FakeQuantize post-pass, the
CLI's --ir, and the clear errors of what stays torch-only."""
import json

import numpy as np
import pytest
import torch

ZOO = ["mixer_fmnist", "qmlp_mixer_fmnist", "resmlp_fmnist", "qmlp_resmlp_fmnist", "gmlp_fmnist", "qmlp_gmlp_fmnist"]
SHAPE = (1, 1, 28, 28)


def _load(name):
    from qmlp_nncf.sources import ModelSource

    return ModelSource(name=name).load().model.eval()


def _float_ir(model, shape=SHAPE):
    from qmlp_nncf.export.openvino_ir import convert

    return convert(model, shape)


def _linear_sites(roles):
    """Roles of every Linear/Conv input and weight, keyed by (torch module path, port): comparable across
    backends."""
    from qmlp_nncf.quantization.rules.roles import module_of

    out = {}
    for node in roles.graph.get_all_nodes():
        if roles.kind(node) not in ("matmul", "conv"):
            continue
        for port in (0, 1):
            edges = roles._port_edges(node, port)
            if not edges:
                continue
            src = edges[0].from_node
            site = (roles.weight_site("w", node, port) if roles.is_const(src)
                    else roles.activation_site("a", node, port, src, [node]))
            out[(module_of(node.node_name), port)] = site.roles
    return out


def _parity(model, shape):
    import nncf

    from qmlp_nncf.quantization.openvino_model import graph_roles
    from qmlp_nncf.quantization.rules.roles import GraphRoles

    torch_sites = _linear_sites(GraphRoles(nncf.build_graph(model, example_input=torch.randn(shape))))
    ov_sites = _linear_sites(graph_roles(_float_ir(model, shape)))
    assert torch_sites and set(torch_sites) == set(ov_sites)
    diff = {k: (sorted(torch_sites[k]), sorted(ov_sites[k])) for k in torch_sites if torch_sites[k] != ov_sites[k]}
    assert not diff
    return torch_sites


# two models cover the patterns by default (token groups, Affine); `make test-all` runs all six
@pytest.mark.parametrize("name", [n if n in ("qmlp_mixer_fmnist", "resmlp_fmnist") else
                                  pytest.param(n, marks=pytest.mark.slow) for n in ZOO])
def test_roles_are_the_same_on_the_torch_and_the_openvino_graph(name):
    sites = _parity(_load(name), SHAPE)
    roles = set().union(*sites.values())
    assert {"token_mixing_input", "channel_mixing_input", "classifier_input", "patch_embedding_input"} <= roles
    assert ("spatial_gating" in roles) == (name == "gmlp_fmnist")  # Q-MLP splits the projection into groups
    assert ("affine_output" in roles) == (name == "resmlp_fmnist")


def test_roles_match_on_a_timm_224_model():
    """A timm ResMLP at 224 px: OpenVINO folds a transpose into the token MatMul (transpose_a), and its Affine is
    Multiply+Add. Trained-like (non-identity) Affine parameters: an identity Affine is removed by OpenVINO."""
    import timm

    model = timm.create_model("resmlp_12_224", num_classes=10).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    sites = _parity(model, (1, 3, 224, 224))
    assert sum("token_mixing" in r and "weights" in r for r in sites.values()) == 12


@pytest.fixture(scope="module")
def calib(fmnist_train):
    return [fmnist_train[i][0].unsqueeze(0) for i in range(64)]


@pytest.fixture(scope="module")
def w4a4_ir(calib):
    from qmlp_nncf.quantization import quantize

    return quantize(_float_ir(_load("qmlp_mixer_fmnist")), calib[:32], "qmlp_w4a4")


def test_fake_quantize_nodes_carry_the_specs(w4a4_ir, tmp_path):
    """Levels, affine ranges and compressed 4-bit weights, read back from the saved IR."""
    import openvino as ov

    from qmlp_nncf.quantization.openvino_model import fq_census

    result = w4a4_ir
    ov.save_model(result.model, str(tmp_path / "m.xml"), compress_to_fp16=False)
    saved = ov.Core().read_model(str(tmp_path / "m.xml"))
    census = {r["name"]: r for r in fq_census(saved)}
    activations = [r for r in result.report if not r["float"] and "calibrated_low" in r]
    assert activations and len(census) == len(activations)  # weights are compressed constants, not FQs
    for r in activations:
        fq = census[r["hook"]]
        assert fq["levels"] == 2 ** r["bits"]
        assert fq["low"][0] == pytest.approx(r["low"], rel=1e-6)
        if {"token_mixing_input", "channel_mixing_input"} & set(r["roles"]):
            assert r["bits"] == 4 and not r["symmetric"]
        if "residual_add" in r["roles"] or "patch_embedding_input" in r["roles"]:
            assert r["bits"] == 8 and r["symmetric"]
    weights = [r for r in result.report if "weights" in r["roles"]]
    four = sum(r["bits"] == 4 for r in weights)
    assert four == len(weights) - 2  # all but the stem and the head
    types = [op.get_output_element_type(0).get_type_name() for op in saved.get_ordered_ops()
             if op.get_type_name() == "Constant"]
    assert types.count("u4") + types.count("i4") == four and types.count("i8") + types.count("u8") >= 2


def test_each_token_group_keeps_its_own_fake_quantize(w4a4_ir):
    groups = [r for r in w4a4_ir.report if "token_mixing_input" in r["roles"] and "weights" not in r["roles"]]
    assert len(groups) == 2 * 6 * 4  # fc1 and fc2 of 4 token MLPs in each of the 6 blocks


@pytest.mark.parametrize("name", [pytest.param("mixer_fmnist", marks=pytest.mark.slow), "resmlp_fmnist",
                                  pytest.param("gmlp_fmnist", marks=pytest.mark.slow)])
def test_quantize_an_ir_and_evaluate_it_on_real_images(name, calib, fmnist_test):
    from qmlp_nncf.export.evaluate import ir_top1
    from qmlp_nncf.quantization import quantize
    from qmlp_nncf.sources import subset

    model = _load(name)
    result = quantize(_float_ir(model), calib, "qmlp_w8a8")
    assert result.family == name.split("_")[0] and result.quantizers > 0
    val = subset(fmnist_test, 1000)
    q, f = ir_top1(result.model, val)["top1"], ir_top1(_float_ir(model), val)["top1"]
    assert q >= f - 0.015, (q, f)


def test_stock_baseline_is_nncf_openvino_result(calib):
    """nncf_default_w8a8 on the OpenVINO path is NNCF's own OpenVINO-backend result, FakeQuantize by FakeQuantize."""
    import nncf

    from qmlp_nncf.quantization import quantize
    from qmlp_nncf.quantization.openvino_model import fq_census

    ir = _float_ir(_load("mixer_fmnist"))
    ours = fq_census(quantize(ir, calib, "nncf_default_w8a8").model)
    stock = fq_census(nncf.quantize(ir, nncf.Dataset([x.numpy() for x in calib]), subset_size=len(calib),
                                    fast_bias_correction=True))
    assert ours == stock and ours


def test_sites_are_found_through_smoothquant(calib):
    """SmoothQuant puts a Multiply between the tensor and its FakeQuantize: the site is still the Linear's input."""
    from qmlp_nncf.quantization import quantize

    report = quantize(_float_ir(_load("resmlp_fmnist")), calib[:16], "nncf_transformer_w8a8").report
    assert any("nncf_smooth_quant" in r["hook"] for r in report)
    inputs = [r for r in report if "weights" not in r["roles"]]
    assert inputs and all({"token_mixing_input", "channel_mixing_input", "classifier_input",
                           "patch_embedding_input"} & set(r["roles"]) for r in inputs)


def test_stock_4bit_baseline_rebuilds_signed_symmetric_ranges(calib):
    """Forcing 4 bits on NNCF's signed symmetric FakeQuantize [-h * 256/254, h] must give [-h * 16/14, h], as
    ``num_bits = 4`` does on NNCF's torch quantizer; keeping the 8-bit low put zero off the grid (gMLP: -35 pt)."""
    from qmlp_nncf.quantization import quantize
    from qmlp_nncf.quantization.openvino_model import fake_quantizes

    model = quantize(_float_ir(_load("qmlp_gmlp_fmnist")), calib[:16], "nncf_transformer_w4a4").model
    signed = 0
    for fq in fake_quantizes(model):
        levels = fq.get_attributes()["levels"]
        low, high = (float(fq.input_value(i).get_node().get_data().reshape(-1)[0]) for i in (1, 2))
        assert low != pytest.approx(-high * 256 / 254, rel=1e-5) or levels == 256
        if levels == 16 and low == pytest.approx(-high * 16 / 14, rel=1e-5):
            signed += 1
    assert signed > 0


def test_scopes_use_the_ir_node_names(calib):
    from qmlp_nncf.quantization import quantize
    from qmlp_nncf.quantization.rules.rule import rules_from_list
    from qmlp_nncf.quantization.rules.specs import SpecError

    ir = _float_ir(_load("mixer_fmnist"))
    rule = rules_from_list([{"scope": r".*blocks\.0\.mlp_channels\.fc1.*", "float": True,
                             "quantizer_kind": "activations"}], "test")
    result = quantize(ir, calib[:16], "qmlp_w8a8", extra_rules=rule)
    kept_float = [r for r in result.report if r["float"]]
    assert len(kept_float) == 1 and "channel_mixing_input" in kept_float[0]["roles"]
    torch_name = rules_from_list([{"scope": "blocks/0/mlp_channels/fc1/linear/0", "float": True}], "test")
    with pytest.raises(SpecError, match="matches no op.*aten::linear"):
        quantize(ir, calib[:16], "qmlp_w8a8", extra_rules=torch_name)


def test_torch_only_features_and_bad_irs_are_clear_errors(calib, tmp_path):
    import openvino as ov
    from openvino import opset13 as ops

    from qmlp_nncf.ir_file import IRError, read_ir
    from qmlp_nncf.quantization import quantize
    from qmlp_nncf.quantization.rules.specs import SpecError

    ir = _float_ir(_load("mixer_fmnist"))
    with pytest.raises(SpecError, match="range tuning.*torch"):
        quantize(ir, calib[:8], "qmlp_w4a4_tuned")
    with pytest.raises(SpecError, match="auto search runs on the torch model"):
        quantize(ir, calib[:8], "auto:w4a4")
    with pytest.raises(IRError, match="the calibration images are 3x28x28 but the IR takes 1x28x28"):
        quantize(ir, [torch.zeros(1, 3, 28, 28)], "qmlp_w8a8")
    with pytest.raises(IRError, match="no such file"):
        read_ir(tmp_path / "missing.xml")
    (tmp_path / "lonely.xml").write_text("<net/>")
    with pytest.raises(IRError, match="weights file lonely.bin is missing"):
        read_ir(tmp_path / "lonely.xml")
    a, b = ops.parameter([1, 4], np.float32), ops.parameter([1, 4], np.float32)
    with pytest.raises(IRError, match="has 2 inputs"):
        quantize(ov.Model([ops.add(a, b)], [a, b]), calib[:8], "qmlp_w8a8")
    p = ops.parameter([1, 4], np.float32)
    with pytest.raises(IRError, match="expected N x C x H x W"):
        quantize(ov.Model([ops.relu(p)], [p]), calib[:8], "qmlp_w8a8")
    q = ops.parameter(ov.PartialShape([1, 1, -1, -1]), np.float32)
    with pytest.raises(IRError, match="dynamic C, H or W"):
        quantize(ov.Model([ops.relu(q)], [q]), calib[:8], "qmlp_w8a8")
    quantized = quantize(ir, calib[:8], "nncf_default_w8a8").model
    with pytest.raises(ValueError, match="already holds FakeQuantize"):
        quantize(quantized, calib[:8], "qmlp_w8a8")


def _qmlp(*args):
    import subprocess
    import sys

    from conftest import REPO

    return subprocess.run([sys.executable, "-m", "qmlp_nncf", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_cli_quantizes_an_ir(tmp_path):
    """``qmlp quantize --ir``: writes the quantized IR with its metadata and the report, evaluates it."""
    import openvino as ov

    from qmlp_nncf.export.openvino_ir import read_metadata

    ov.save_model(_float_ir(_load("qmlp_resmlp_fmnist")), str(tmp_path / "float.xml"))  # f16-compressed, as usual
    out = tmp_path / "q"
    proc = _qmlp("quantize", "--ir", str(tmp_path / "float.xml"), "--recipe", "qmlp_w8a8", "--out", str(out),
                 "--calibration-size", "32", "--limit", "500", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    assert run["backend"] == "openvino" and run["n"] == 500 and run["top1"] > 0.8
    meta = read_metadata(str(out / "ir" / "model.xml"))
    assert meta["recipe"] == "qmlp_w8a8" and meta["backend"] == "openvino" and "data_config" in meta
    report = json.loads((out / "report.json").read_text())
    assert report["quantizers"] and all("roles" in r for r in report["quantizers"])
    bad = _qmlp("quantize", "--ir", str(tmp_path / "float.xml"), "--model", "mixer_fmnist", "--recipe", "qmlp_w8a8",
                "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "drop --model" in bad.stderr and not (tmp_path / "x").exists()
    missing = _qmlp("quantize", "--ir", str(tmp_path / "nope.xml"), "--recipe", "qmlp_w8a8", "--out",
                    str(tmp_path / "y"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and not (tmp_path / "y").exists()


@pytest.mark.slow  # the library path it drives is covered above; this checks the script's table and JSON
def test_ov_path_benchmark(tmp_path, capsys):
    from qmlp_nncf.benchmark.ov_path import main

    out = tmp_path / "rows.json"
    assert main(["--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--calibration-size", "8", "--limit", "200",
                 "--no-torch-top1", "--threads", "1", "--json", str(out)]) == 0
    assert "| mixer_fmnist | qmlp_w8a8 |" in capsys.readouterr().out
    row = json.loads(out.read_text())["rows"][0]
    assert row["n"] == 200 and row["quantizers_torch"] == row["quantizers_openvino"] > 10
    assert row["delta_pt"] == round(100 * (row["openvino_path_ir_top1"] - row["torch_path_ir_top1"]), 2)
    assert main(["--model", "mixer_fmnist", "--recipe", "nope"]) == 2
