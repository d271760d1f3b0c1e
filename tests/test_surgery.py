"""to_qmlp: exact weight transfer, parameter counts, timm registration, checkpoints, OpenVINO, errors."""
import copy
import json

import pytest
import timm
import torch
from torch import nn

from qmlp_nncf.checkpoint import load_model, save_checkpoint
from qmlp_nncf.models import family_of_name
from qmlp_nncf.models.qmlp_blocks import Clip, LearnableClip
from qmlp_nncf.models.surgery import expand_state_dict, to_qmlp

FMNIST = ("mixer_fmnist", "resmlp_fmnist", "gmlp_fmnist")
IMAGENET = ("mixer_b16_224", "resmlp_24_224", "gmlp_s16_224")


pytestmark = pytest.mark.usefixtures("one_thread")


def randomized(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """A timm model with every weight random and O(1): timm's init zeroes the head, gives ResMLP
    layer scales of 1e-4 and gMLP gates of ~0, which would hide a wrong weight transfer."""
    torch.manual_seed(seed)
    model = timm.create_model(name, **kwargs).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key == "head.weight":
                p.copy_(torch.randn_like(p))  # logits of order 10
            elif p.dim() >= 2:
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            else:
                scale = key.endswith(("alpha", "ls1", "ls2", "norm.weight", "norm1.weight", "norm2.weight"))
                p.copy_(scale * 0.5 + 0.2 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def images(fmnist_test):
    return torch.stack([fmnist_test[i][0] for i in range(64)])


def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


# ---------------------------------------------------------------- exact function
@pytest.mark.parametrize("name", FMNIST)
@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_token_groups_alone_compute_the_same_function(name, groups, images):
    base = randomized(name)
    model = copy.deepcopy(base)
    report = to_qmlp(model, layernorm=False, activation=None, token_groups=groups)
    assert report.exact and report.family == family_of_name(name)
    with torch.no_grad():
        assert base(images).abs().max() > 1  # a live head: the check means something
    assert max_diff(model, base, images) < 1e-5


@pytest.mark.parametrize("name", FMNIST)
def test_exactness_check_catches_a_wrong_group(name, images):
    base = randomized(name)
    model = copy.deepcopy(base)
    to_qmlp(model, layernorm=False, activation=None, token_groups=4)
    token_layer = next(m for k, m in model.named_modules() if k.endswith((".mlp_tokens.2.fc1", ".linear_tokens.2",
                                                                         ".gate.proj.2")))
    with torch.no_grad():
        token_layer.weight.mul_(1.5)
    assert max_diff(model, base, images) > 1e-3


@pytest.mark.parametrize("name,groups", [("mixer_b16_224", 4), ("resmlp_24_224", 4), ("gmlp_s16_224", 4),
                                         ("resmlp_24_224", 2), ("gmlp_s16_224", 8)])
def test_imagenet_models_convert_exactly(name, groups):
    base = randomized(name)
    model = copy.deepcopy(base)
    to_qmlp(model, layernorm=False, activation=None, token_groups=groups)
    assert max_diff(model, base, torch.randn(1, 3, 224, 224)) < 1e-5


def test_layernorm_and_activation_change_the_function_and_say_so(images):
    base = randomized("resmlp_fmnist")
    model = copy.deepcopy(base)
    report = to_qmlp(model)
    assert not report.exact
    assert report.norms_replaced == 13  # 2 per block + final
    assert report.activations_replaced == 6
    assert not any(isinstance(m, nn.GELU) for m in model.modules())
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 13
    assert torch.equal(model.blocks[0].norm1.weight, base.blocks[0].norm1.alpha.flatten())
    assert torch.equal(model.blocks[0].norm1.bias, base.blocks[0].norm1.beta.flatten())
    assert model.blocks[0].norm1.eps == 1e-6
    assert "changes the function" in str(report)
    assert max_diff(model, base, images) > 1e-3


# ---------------------------------------------------------------- parameter counts
TOKEN_PARAMS = {  # parameters of one token-mixing unit (49 tokens, token MLP hidden 64)
    "mixer_fmnist": 49 * 64 + 64 + 64 * 49 + 49,
    "resmlp_fmnist": 49 * 49 + 49,
    "gmlp_fmnist": 49 * 49 + 49,
}


@pytest.mark.parametrize("name", FMNIST)
@pytest.mark.parametrize("groups,activation", [(1, "relu6"), (4, "relu6"), (2, "learnable_clip"),
                                               (8, "clip")])
def test_parameter_count_formula(name, groups, activation):
    model = timm.create_model(name)
    report = to_qmlp(model, activation=activation, token_groups=groups)
    acts_per_block = groups + 1 if name.startswith("mixer") else 1
    clip_params = 6 * acts_per_block if activation == "learnable_clip" else 0
    expected = report.params_before + 6 * (groups - 1) * TOKEN_PARAMS[name] + clip_params
    assert report.params_after == expected == sum(p.numel() for p in model.parameters())
    kind = {"relu6": nn.ReLU6, "clip": Clip, "learnable_clip": LearnableClip}[activation]
    assert sum(isinstance(m, kind) for m in model.modules()) == 6 * acts_per_block


# ---------------------------------------------------------------- registration and checkpoints
@pytest.mark.parametrize("name", timm.list_models("qmlp_*"))
def test_every_registered_variant_builds(name):
    kwargs = {} if name.endswith("fmnist") else {"num_blocks": 2}
    model = timm.create_model(name, **kwargs).eval()
    shape = (1, 1, 28, 28) if name.endswith("fmnist") else (1, 3, 224, 224)
    with torch.no_grad():
        assert model(torch.randn(shape)).shape[-1] == (10 if name.endswith("fmnist") else 1000)
    assert family_of_name(name) == family_of_name(name.removeprefix("qmlp_"))
    assert not any(isinstance(m, nn.GELU) for m in model.modules())
    if name.endswith("fmnist"):
        assert model.pretrained_cfg["file"].endswith(f"zoo/checkpoints/{name}.pth")


@pytest.mark.parametrize("name", ["resmlp_24_224", "gmlp_s16_224"])
def test_full_size_imagenet_variant_parameter_count(name):
    blocks = {"resmlp_24_224": 24, "gmlp_s16_224": 30}[name]
    base = sum(p.numel() for p in timm.create_model(name).parameters())
    qmlp = sum(p.numel() for p in timm.create_model(f"qmlp_{name}").parameters())
    assert qmlp == base + blocks * 3 * (196 * 196 + 196)  # 3 extra token Linears (G=4) per block


@pytest.mark.parametrize("name", FMNIST)
def test_converted_state_dict_loads_into_the_registered_model(name, images):
    model = randomized(name)
    to_qmlp(model)
    registered = timm.create_model(f"qmlp_{name}").eval()
    registered.load_state_dict(model.state_dict())  # strict
    assert max_diff(registered, model, images) == 0


def test_non_default_options_round_trip_through_a_checkpoint(tmp_path, images):
    model = randomized("gmlp_fmnist")
    to_qmlp(model, activation="learnable_clip", token_groups=2, clip=(0.0, 4.0))
    path = tmp_path / "q.pth"
    save_checkpoint(path, {"state_dict": model.state_dict(), "arch": "qmlp_gmlp_fmnist",
                           "model_kwargs": {"activation": "learnable_clip", "token_groups": 2, "clip": (0.0, 4.0)}})
    loaded, _ = load_model(path)
    assert max_diff(loaded, model, images) == 0


@pytest.mark.parametrize("source", ["converted", "base"])
def test_timm_pretrained_file_overlay(tmp_path, images, source):
    """``pretrained_cfg_overlay=dict(file=...)`` takes a Q-MLP checkpoint or a base checkpoint."""
    base = randomized("resmlp_fmnist")
    converted = copy.deepcopy(base)
    to_qmlp(converted)
    path = tmp_path / "w.pth"
    save_checkpoint(path, {"state_dict": (converted if source == "converted" else base).state_dict()})
    model = timm.create_model("qmlp_resmlp_fmnist", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert max_diff(model.eval(), converted, images) == 0


def test_foreign_weights_are_rejected():
    with pytest.raises(ValueError, match="do not fit"):
        expand_state_dict(timm.create_model("mixer_fmnist").state_dict(), timm.create_model("qmlp_resmlp_fmnist"))


# ---------------------------------------------------------------- OpenVINO
def test_openvino_export_matches_torch_top1(fmnist_test):
    import openvino as ov

    model = randomized("resmlp_fmnist")
    to_qmlp(model, activation="learnable_clip")
    x = torch.stack([fmnist_test[i][0] for i in range(300)])
    ov_model = ov.convert_model(model, example_input=x[:1], input=[-1, 1, 28, 28])
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "INFERENCE_NUM_THREADS": 1})
    ov_logits = torch.from_numpy(compiled(x.numpy())[0])
    with torch.no_grad():
        logits = model(x)
    assert logits.abs().max() > 0.1
    assert (ov_logits.argmax(-1) == logits.argmax(-1)).float().mean() >= 0.99
    assert torch.allclose(ov_logits, logits, atol=1e-3, rtol=1e-3)  # f32 float model: close elementwise


def test_openvino_runs_every_group_in_int8():
    """NNCF (TRANSFORMER, no SmoothQuant) + OpenVINO: all Linears, token groups included, run int8."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    model = timm.create_model("qmlp_mixer_fmnist", num_blocks=2).eval()
    x = torch.randn(1, 1, 28, 28)
    q = nncf.quantize(model, nncf.Dataset([torch.randn(1, 1, 28, 28) for _ in range(3)]), subset_size=3,
                      model_type=nncf.ModelType.TRANSFORMER, advanced_parameters=AdvancedQuantizationParameters(
                          smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)))
    compiled = ov.Core().compile_model(ov.convert_model(q, example_input=x, input=[1, 1, 28, 28]), "CPU",
                                       {"INFERENCE_NUM_THREADS": 1})
    fcs = [op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()
           if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"]
    assert len(fcs) == 2 * (4 * 2 + 2) + 1  # blocks x (groups x fc1/fc2 + channel fc1/fc2) + head
    assert set(fcs) <= {"u8", "i8"}


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,match", [
    (dict(activation="gelu"), "unknown activation"),
    (dict(token_groups=3), "does not divide"),
    (dict(token_groups=0), "positive integer"),
    (dict(token_groups=2.0), "positive integer"),
    (dict(activation="clip", clip=(1.0, 1.0)), "lo < hi"),
])
def test_bad_arguments_are_clear_errors_and_leave_the_model_alone(kwargs, match, images):
    model = randomized("mixer_fmnist")
    before = copy.deepcopy(model)
    with pytest.raises(ValueError, match=match):
        to_qmlp(model, **kwargs)
    assert max_diff(model, before, images) == 0 and str(model) == str(before)


def test_gmlp_groups_must_divide_the_gate_width():
    model = timm.create_model("gmlp_fmnist", mlp_ratio=0.6875)  # gate width 44: 8 divides 128 but not 44
    with pytest.raises(ValueError, match="spatial gate"):
        to_qmlp(model, token_groups=8)


@pytest.mark.parametrize("model,match", [
    (nn.Sequential(nn.Linear(2, 2)), "MlpMixer"),
    (timm.create_model("qmlp_mixer_fmnist"), "already a Q-MLP"),
])
def test_unsupported_models_are_rejected(model, match):
    with pytest.raises(ValueError, match=match):
        to_qmlp(model)


# ---------------------------------------------------------------- CLI
def test_cli_convert_reports_exact_part_and_top1(tmp_path, capsys):
    from qmlp_nncf.cli import main

    base = tmp_path / "base.pth"
    save_checkpoint(base, {"state_dict": randomized("mixer_fmnist").state_dict(), "arch": "mixer_fmnist"})
    out = tmp_path / "q.pth"
    assert main(["convert", "--checkpoint", str(base), "--out", str(out), "--limit", "128", "--token-groups", "2",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "qmlp_mixer_fmnist" and result["images"] == 128
    assert result["exact_part_max_abs_diff"] < 1e-5
    assert 0 <= result["top1_before_finetune"] <= 1
    model, meta = load_model(out)
    assert meta["base"] == "mixer_fmnist" and meta["model_kwargs"] == {"token_groups": 2}
    assert meta["base_checkpoint"] == str(base)


def test_cli_convert_bad_input_is_a_one_line_error(tmp_path, capsys):
    from qmlp_nncf.cli import main

    assert main(["convert", "--model", "resmlp_fmnist", "--out", str(tmp_path / "q.pth"), "--token-groups",
                 "5"]) == 2
    assert "does not divide" in capsys.readouterr().err


# ---------------------------------------------------------------- range statistics
def test_linear_input_ranges_are_exact(fmnist_test):
    from qmlp_nncf.analysis import linear_input_ranges

    model = randomized("resmlp_fmnist")
    seen = []
    handle = model.blocks[2].mlp_channels.fc2.register_forward_pre_hook(lambda m, i: seen.append(i[0].abs().flatten()))
    layers, summary = linear_input_ranges(model, fmnist_test, n_images=40, batch_size=16)
    handle.remove()
    everything = torch.cat(seen[1:])  # seen[0] is the one-image probe
    layer = next(l for l in layers if l["name"] == "blocks.2.mlp_channels.fc2")
    assert layer["numel"] == everything.numel()
    assert layer["max_abs"] == pytest.approx(float(everything.max()))
    assert layer["percentile"] == pytest.approx(float(torch.quantile(everything.double(), 0.9999)), rel=1e-5)
    assert len(layers) == summary["layers"] == 6 * 3 + 1  # token Linear, fc1, fc2 per block + head
    assert summary["max_max_abs"] == max(l["max_abs"] for l in layers)
    assert summary["median_percentile"] <= summary["max_percentile"]
    with pytest.raises(ValueError, match="percentile"):
        linear_input_ranges(model, fmnist_test, percentile=100)
