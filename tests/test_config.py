"""NNCF 2.x-style JSON configs: parsing into recipes, validation errors, and end-to-end quantization."""
import copy
import dataclasses
import json
import re

import nncf
import pytest
import timm
import torch
from conftest import REPO

import qmlp_nncf.models  # noqa: F401  (registers the zoo models with timm)
from qmlp_nncf.quantization import Rule, SpecError, load_config, load_recipe, quantize
from qmlp_nncf.quantization.recipes.config import strip_json_comments, translate_nncf2_scope
from qmlp_nncf.quantization.recipes.knobs import RangeTuning
from qmlp_nncf.quantization.rules.ignored_scope import check_ignored_scope, check_scopes
from qmlp_nncf.quantization.rules.roles import GraphRoles, Site
from qmlp_nncf.quantization.rules.specs import QuantizerSpec, RangeSpec

torch.set_num_threads(1)

FULL = {
    "model": "resmlp_fmnist",
    "checkpoint": "weights/model.pth",
    "input_info": {"sample_size": [1, 1, 28, 28]},
    "compression": {
        "algorithm": "quantization",
        "preset": "mixed",
        "initializer": {"range": {"num_init_samples": 300, "type": "percentile",
                                  "params": {"min_percentile": 0.1, "max_percentile": 99.9}}},
        "weights": {"bits": 8, "mode": "symmetric", "per_channel": True},
        "activations": {"bits": 8, "mode": "asymmetric", "per_channel": False},
        "scope_overrides": {"activations": {"{re}.*linear_tokens.*": {"bits": 4, "mode": "asymmetric"}},
                            "weights": {"{re}.*fc1.*": {"bits": 4}}},
        "ignored_scopes": ["{re}.*head.*", "blocks/0/mlp_channels/fc1/linear/0"],
    },
    "qmlp": {"recipe": "qmlp_w4a4", "rules": [{"match": ["classifier_input"], "spec": {"bits": 8}}],
             "calibration_size": 300},
}


def with_(path: str, value, base=None) -> dict:
    """A copy of ``base`` (default FULL) with ``a.b.c`` set to ``value``."""
    cfg = copy.deepcopy(FULL if base is None else base)
    *parents, last = path.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return cfg


# ------------------------------------------------------------------ parsing
def test_full_config_parses_into_the_recipe(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(FULL))
    cfg = load_config(path)
    base = load_recipe("qmlp_w4a4")
    r = cfg.recipe
    assert r.name == "qmlp_w4a4+cfg"
    assert r.calibration_size == 300 and r.nncf.preset == "mixed" and r.nncf.model_type == "transformer"
    assert r.weights == QuantizerSpec(bits=8, symmetric=True, per_channel=True)
    assert r.activations == QuantizerSpec(bits=8, symmetric=False, range=RangeSpec("percentile", 99.9))
    assert r.rules[:len(base.rules)] == base.rules
    qmlp_rule, w_rule, a_rule = r.rules[len(base.rules):]
    assert qmlp_rule.match == {"classifier_input"}
    assert (w_rule.scope, w_rule.quantizer_kind, w_rule.spec) == (".*fc1.*", "weights", {"bits": 4})
    assert (a_rule.scope, a_rule.quantizer_kind, a_rule.spec) == (".*linear_tokens.*", "activations",
                                                                  {"bits": 4, "symmetric": False})
    assert cfg.ignored_scope.patterns == [".*head.*"]
    assert cfg.ignored_scope.names == ["blocks/0/mlp_channels/fc1/linear/0"]
    assert (cfg.model, cfg.input_shape) == ("resmlp_fmnist", (1, 1, 28, 28))
    assert cfg.checkpoint == str(tmp_path / "weights/model.pth")


def test_empty_compression_is_the_default_recipe():
    cfg = load_config({"compression": {"algorithm": "quantization"}})
    default = load_recipe("nncf_default_w8a8")
    assert cfg.recipe == dataclasses.replace(default, name="nncf_default_w8a8+config")
    assert cfg.ignored_scope is None and cfg.model is None and cfg.input_shape is None


def test_preset_sets_default_modes_and_explicit_mode_wins():
    perf = load_config({"qmlp": {"recipe": "qmlp_w4a4"}, "compression": {"algorithm": "quantization",
                                                                         "preset": "performance"}})
    assert perf.recipe.activations.symmetric and perf.recipe.weights.symmetric
    assert perf.recipe.nncf.preset == "performance"
    explicit = load_config({"qmlp": {"recipe": "qmlp_w4a4"}, "compression": {
        "algorithm": "quantization", "preset": "performance", "activations": {"mode": "asymmetric"}}})
    assert not explicit.recipe.activations.symmetric


def test_baseline_recipe_maps_mode_and_range_to_nncf_settings():
    cfg = load_config({"compression": {"algorithm": "quantization", "activations": {"mode": "asymmetric", "bits": 4},
                                       "initializer": {"range": {"type": "percentile",
                                                                 "params": {"max_percentile": 99.99}}}}})
    assert cfg.recipe.nncf.preset == "mixed"
    assert cfg.recipe.nncf.range == RangeSpec("percentile", 99.99)
    assert cfg.recipe.activations.bits == 4 and not cfg.recipe.activations.symmetric


@pytest.mark.parametrize("params, expected", [({"min_percentile": 0.01}, 99.99), ({}, 99.9),
                                              ({"max_percentile": 99}, 99.0)])
def test_percentile_params(params, expected):
    cfg = load_config(with_("compression.initializer.range", {"type": "percentile", "params": params}))
    assert cfg.recipe.activations.range == RangeSpec("percentile", expected)


def test_num_init_samples_alone_keeps_the_recipe_range():
    cfg = load_config({"qmlp": {"recipe": "qmlp_w4a4"}, "compression": {
        "algorithm": "quantization", "initializer": {"range": {"num_init_samples": 64}}}})
    assert cfg.recipe.calibration_size == 64
    assert cfg.recipe.activations.range == load_recipe("qmlp_w4a4").activations.range


def test_range_tuning_override():
    on = load_config({"qmlp": {"recipe": "qmlp_w4a4", "range_tuning": {"steps": 50}}}).recipe
    assert on.range_tuning == RangeTuning(steps=50) and on.rules == load_recipe("qmlp_w4a4").rules
    assert load_config({"qmlp": {"recipe": "qmlp_w4a4_tuned", "range_tuning": False}}).recipe.range_tuning is None
    with pytest.raises(SpecError, match="qmlp.range_tuning: recipe qmlp_w4_weight_only compresses weights only"):
        load_config({"qmlp": {"recipe": "qmlp_w4_weight_only", "range_tuning": {}}})


def test_ptq_aid_overrides():
    from qmlp_nncf.quantization.recipes.knobs import ErrorCorrection, Reparameterization

    on = load_config({"qmlp": {"recipe": "plain_w4a4_p999", "error_correction": {"rows": 4096},
                               "reparameterize": True}}).recipe
    assert on.error_correction == ErrorCorrection(rows=4096) and on.reparameterize == Reparameterization()
    assert load_config({"qmlp": {"recipe": "plain_w4a4_ec", "error_correction": False}}).recipe.error_correction is None
    with pytest.raises(SpecError, match="qmlp.error_correction: recipe qmlp_w4_weight_only compresses weights only"):
        load_config({"qmlp": {"recipe": "qmlp_w4_weight_only", "error_correction": True}})
    with pytest.raises(SpecError, match="qmlp.reparameterize.strength must be in"):
        load_config({"qmlp": {"recipe": "plain_w4a4_p999", "reparameterize": {"strength": 3}}})


def test_plain_scope_is_an_exact_name_and_override_carries_range():
    cfg = load_config(with_("compression.scope_overrides", {"activations": {
        "blocks/0/linear_tokens/linear/0": {"bits": 4, "range": {"type": "percentile",
                                                                "params": {"max_percentile": 99.5}}}}}))
    rule = cfg.recipe.rules[-1]
    assert rule.scope == re.escape("blocks/0/linear_tokens/linear/0")
    assert rule.spec == {"bits": 4, "range": {"estimator": "percentile", "percentile": 99.5}}


def test_example_config_in_docs_loads_and_its_scopes_match_the_zoo_model():
    cfg = load_config(REPO / "docs" / "examples" / "qmlp_config.json")
    assert cfg.recipe.name == "qmlp_w8a8+qmlp_config"
    model = timm.create_model(cfg.model)
    roles = GraphRoles(nncf.build_graph(model, example_input=torch.zeros(cfg.input_shape)))
    check_scopes(cfg.recipe.rules, roles)
    check_ignored_scope(cfg.ignored_scope, roles)


def test_quantizer_kind_rule():
    rule = Rule.from_dict({"scope": ".*fc1.*", "quantizer_kind": "activations", "spec": {"bits": 4}}, "r")
    act = Site("post_hooks.n__0.0", "blocks/0/norm2/addcmul/0", 0, False, frozenset({"channel_mixing_input"}),
               ("blocks/0/mlp_channels/fc1/linear/0",))
    weight = Site("pre_hooks.w__1.0", "blocks/0/mlp_channels/fc1/linear/0", 1, True,
                  frozenset({"weights", "channel_mixing"}), ())
    assert rule.matches(act) and not rule.matches(weight)  # the scope reaches the Linear's input quantizer
    with pytest.raises(SpecError, match=r"r\.quantizer_kind: 'bias' unknown; choose one of \['weights', "):
        Rule.from_dict({"scope": "x", "quantizer_kind": "bias"}, "r")


BAD = [
    ({**FULL, "modle": "x"}, r"^config: unknown key\(s\) \['modle'\]; valid keys: \['batch_size', 'checkpoint'.*"
                             r"did you mean 'model'\?$"),
    (with_("compression.algorithm", "sparsity"), r"compression\.algorithm: 'sparsity' .*\['quantization'\]"),
    (with_("compression.target_device", "CPU"), r"^compression: unknown key\(s\) \['target_device'\]; valid keys"),
    (with_("compression.activations.bits", 3), r"compression\.activations\.bits: 3 bits .*choose 4 or 8"),
    (with_("compression.activations.bits", "8"), r"compression\.activations\.bits: expected int, got str"),
    (with_("compression.weights.per_channel", 1), r"compression\.weights\.per_channel: expected bool"),
    (with_("compression.weights.mode", "affine"), r"compression\.weights\.mode: 'affine' unknown; .*'symmetric'"),
    (with_("compression.weights.signed", True), r"^compression\.weights\.signed: forcing the sign is not supported"),
    (with_("compression.weights.sign", True),
     r"^compression\.weights: unknown key\(s\) \['sign'\]; valid keys: \['bits', 'mode', 'per_channel'\].*"
     r"did you mean 'signed'"),
    (with_("compression.activations.per_channel", True), r"compression\.activations\.per_channel: .*use false"),
    (with_("compression.preset", "fast"), r"compression\.preset: 'fast' unknown; choose one of \['performance'"),
    (with_("compression.initializer.range.type", "threesigma"),
     r"compression\.initializer\.range\.type: 'threesigma' unknown; choose one of \['min_max'"),
    (with_("compression.initializer.range.params", {"min_percentile": 1.0, "max_percentile": 99.9}),
     r"compression\.initializer\.range\.params: min_percentile 1\.0 and max_percentile 99\.9 must mirror"),
    (with_("compression.initializer.range.params", {"max_percentile": 40}),
     r"compression\.initializer\.range\.params\.max_percentile: .*\(50, 100\]"),
    (with_("compression.initializer.range", [{"type": "min_max"}]), r"compression\.initializer\.range: per-scope"),
    (with_("compression.initializer.bn_adaptation", {}),
     r"^compression\.initializer: unknown key\(s\) \['bn_adaptation'\]"),
    (with_("compression.initializer.range.num_init_samples", 0), r"num_init_samples: must be >= 1"),
    (with_("qmlp.calibration_size", 100), r"num_init_samples and qmlp\.calibration_size disagree"),
    (with_("qmlp.recipe", "qmlp_w9a9"), r"qmlp\.recipe: unknown recipe 'qmlp_w9a9'; available: .*qmlp_w4a4"),
    (with_("qmlp.recipe", 4), r"qmlp\.recipe: expected str"),
    (with_("qmlp.extra", 1), r"^qmlp: unknown key\(s\) \['extra'\]; valid keys: \['calibration_size', 'error_correction', 'range_tuning', 'recipe', 'reparameterize'"),
    (with_("qmlp.range_tuning", {"steps": 0}), r"qmlp\.range_tuning\.steps: must be > 0, got 0"),
    (with_("qmlp.range_tuning", True), r"qmlp\.range_tuning: expected an object \(or false\), got bool True"),
    (with_("qmlp.rules", [{"match": ["tokens"]}]), r"qmlp\.rules\[0\]\.match: unknown role\(s\) \['tokens'\]"),
    (with_("compression.scope_overrides.activations", {"{re}blocks/(0": {"bits": 4}}),
     r'compression\.scope_overrides\.activations\["\{re\}blocks/\(0"\]: invalid regex'),
    (with_("compression.scope_overrides.activations", {"{re}.*": {"bits": 2}}),
     r'compression\.scope_overrides\.activations\["\{re\}\.\*"\]\.bits: 2 bits'),
    (with_("compression.scope_overrides.weights", {"{re}.*": {"range": {"type": "min_max"}}}),
     r'compression\.scope_overrides\.weights\["\{re\}\.\*"\]: unknown key\(s\) \[\'range\'\]'),
    (with_("compression.scope_overrides.biases", {}), r"compression\.scope_overrides: unknown key\(s\) \['biases'\]"),
    (with_("compression.ignored_scopes", ["{re}head(", "x"]), r"compression\.ignored_scopes\[0\]: invalid regex"),
    (with_("compression.ignored_scopes", [3]), r"compression\.ignored_scopes\[0\]: expected str"),
    (with_("input_info", {"sample_size": [1, 1, 28, "x"]}), r"input_info\.sample_size\[3\]: expected int"),
    (with_("input_info", [{"sample_size": [1, 1, 28, 28]}] * 2), r"input_info: one input only, got a list of 2"),
    (with_("compression", [FULL["compression"], FULL["compression"]]), r"compression: expected one algorithm"),
    # the stock-NNCF baselines keep NNCF's quantizers: only bits (and preset/range) can change
    (with_("qmlp", {"recipe": "nncf_transformer_w8a8"}, with_("compression.weights.mode", "asymmetric")),
     r"compression\.weights\.mode: recipe nncf_transformer_w8a8 keeps NNCF's own quantizers"),
    (with_("qmlp", {"recipe": "nncf_default_w8a8"}),
     r'compression\.scope_overrides\.activations\["\{re\}\.\*linear_tokens\.\*"\]: recipe nncf_default_w8a8 '
     r"keeps NNCF's own quantizers \(recalibrate: false\), so only their 'bits' can change"),
    (with_("qmlp", {"recipe": "qmlp_w4_weight_only"}), r"compression\.activations: recipe qmlp_w4_weight_only is "
                                                       r"weight-only"),
]


@pytest.mark.parametrize("cfg, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_config_names_the_place(cfg, message):
    with pytest.raises(SpecError, match=message):
        load_config(cfg)


def test_bad_files(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{,}")
    with pytest.raises(SpecError, match=r"bad\.json: invalid JSON"):
        load_config(tmp_path / "bad.json")


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def resmlp():
    torch.manual_seed(0)
    return timm.create_model("resmlp_fmnist", num_blocks=2).eval()


@pytest.fixture(scope="module")
def calibration():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 1, 28, 28, generator=g) for _ in range(16)]


def config(**compression) -> dict:
    return {"compression": {"algorithm": "quantization", **compression},
            "qmlp": {"recipe": "qmlp_w8a8", "calibration_size": 16}}


def report_of(result) -> list[dict]:
    """quantize()'s per-quantizer report (a QuantizationResult's ``report``, or the model's ``qmlp_report``)."""
    return result.report if hasattr(result, "report") else result.qmlp_report


def run(model, items, cfg: dict):
    cfg = load_config(cfg)
    return report_of(quantize(model, items, cfg.recipe, ignored_scope=cfg.ignored_scope, log=lambda m: None))


def test_scope_overrides_hit_exactly_their_quantizers(resmlp, calibration):
    report = run(resmlp, calibration, config(
        scope_overrides={"activations": {"{re}.*linear_tokens.*": {"bits": 4}},
                         "weights": {"{re}blocks/1/mlp_channels/fc1/.*": {"bits": 4, "per_channel": False}}},
        ignored_scopes=["blocks/0/mlp_channels/fc1/linear/0"]))
    four_bit = {r["hook"] for r in report if r["bits"] == 4}
    token_inputs = {r["hook"] for r in report if "token_mixing_input" in r["roles"]}
    assert token_inputs == {"post_hooks.blocks/0/norm1/addcmul/0__0.0", "post_hooks.blocks/1/norm1/addcmul/0__0.0"}
    fc1_weight = "pre_hooks.blocks/1/mlp_channels/fc1/linear/0__1.0"
    # the fused placement's quantizer on each token Linear's output is attached to that Linear: the scope hits it too
    token_outputs = {r["hook"] for r in report if "token_mixing_output" in r["roles"]}
    assert token_outputs == {f"post_hooks.blocks/{b}/linear_tokens/linear/0__0.0" for b in (0, 1)}
    assert four_bit == token_inputs | token_outputs | {fc1_weight}
    by_hook = {r["hook"]: r for r in report}
    assert not by_hook[fc1_weight]["per_channel"] and by_hook[fc1_weight]["symmetric"]
    # the ignored Linear lost its weight quantizer and its input quantizer (on norm2's output)
    hooks = "\n".join(by_hook)
    assert "blocks/0/mlp_channels/fc1" not in hooks and "blocks/0/norm2" not in hooks
    assert "pre_hooks.blocks/1/mlp_channels/fc1/linear/0__1.0" in by_hook
    assert "post_hooks.blocks/1/norm2/addcmul/0__0.0" in by_hook


def test_baseline_config_bits(resmlp, calibration):
    cfg = config(activations={"bits": 4})
    cfg["qmlp"]["recipe"] = "nncf_transformer_w8a8"
    report = run(resmlp, calibration, cfg)
    activations = [r for r in report if "weights" not in r["roles"]]
    assert activations and all(r["bits"] == 4 for r in activations)
    assert all(r["bits"] == 8 for r in report if "weights" in r["roles"])


@pytest.mark.parametrize("compression, message", [
    ({"scope_overrides": {"activations": {"{re}.*linear_token$": {"bits": 4}}}},
     r"scope_overrides\.activations\[\"\{re\}\.\*linear_token\$\"\]\.scope: regex '\.\*linear_token\$' matches no "
     r"op of this model; op names look like: .*blocks/0/linear_tokens/linear/0"),
    ({"ignored_scopes": ["{re}blocks/7/.*"]},
     r"ignored scope: pattern 'blocks/7/\.\*' matches no op .*op names look like: blocks/0/linear_tokens"),
    ({"ignored_scopes": ["blocks/0/mlp_channels/fc1/linear/1"]},
     r"ignored scope: op 'blocks/0/mlp_channels/fc1/linear/1' is not in this model; did you mean "
     r"blocks/0/mlp_channels/fc1/linear/0"),
])
def test_scope_that_matches_nothing_is_a_clear_error(resmlp, calibration, compression, message):
    with pytest.raises(SpecError, match=message):
        run(resmlp, calibration, config(**compression))


# ------------------------------------------------------------------ NNCF 2.x sample configs
NNCF2 = REPO / "tests" / "data" / "nncf2_configs"
BITWIDTH = "compression.initializer.precision.bitwidth_per_scope"


def bitwidth_rules(cfg) -> list:
    return [r for r in cfg.recipe.rules if r.where.startswith(BITWIDTH)]


def test_real_mixed_precision_sample_with_comments_loads():
    """NNCF 2.x's resnet50_imagenet_mixed_int_manual.json, verbatim: // comments, manual bitwidth_per_scope."""
    path = NNCF2 / "resnet50_imagenet_mixed_int_manual.json"
    assert "//" in path.read_text()
    # its weights are asymmetric: the default baseline keeps NNCF's symmetric weights, so that is refused ...
    with pytest.raises(SpecError, match=r"^compression\.weights\.mode: recipe nncf_default_w8a8 keeps NNCF's own"):
        load_config(path, log=lambda m: None)
    # ... and a qmlp recipe takes it as written
    lines = []
    cfg = load_config(path, recipe="qmlp_w4a4", log=lines.append)
    assert (cfg.model, cfg.pretrained, cfg.input_shape, cfg.num_classes) == ("resnet50", True, (1, 3, 224, 224), 1000)
    assert cfg.training == {"epochs": 100, "batch_size": 150, "workers": 6, "lr": 0.00031, "weight_decay": 1e-05}
    assert cfg.target_device == "ANY"  # NNCF 2.x's TRIAL: the config's settings, no hardware constraints
    assert cfg.checkpoint is None and cfg.data is None and cfg.ignored_scope is None
    assert cfg.ignored_keys == ("multiprocessing_distributed", "no_strip_on_export", "optimizer.schedule_type",
                                "optimizer.type", "optimizer.schedule_params.threshold",
                                "optimizer.schedule_params.cooldown")
    assert lines == ["config: ignored NNCF 2.x keys: " + ", ".join(cfg.ignored_keys)]
    r = cfg.recipe
    assert r.name == "qmlp_w4a4+resnet50_imagenet_mixed_int_manual"
    assert (r.weights.bits, r.weights.symmetric, r.activations.bits, r.activations.symmetric) == (4, False, 4, False)
    rules = bitwidth_rules(cfg)
    assert len(rules) == 125 and r.rules[-125:] == tuple(rules)  # after the recipe's rules, in file order
    assert sum(rule.quantizer_kind == "weights" for rule in rules) == 54
    assert rules[0] == Rule(frozenset(), {"bits": 8}, False, "conv1/conv2d/0", "weights",
                            f'{BITWIDTH}[0] "ResNet/NNCFConv2d[conv1]/conv2d_0|WEIGHT"')
    assert (rules[1].scope, rules[1].quantizer_kind, rules[1].spec) == ("fc/linear/0", "weights", {"bits": 4})
    assert rules[5].scope == re.escape("layer1/0/downsample/0/conv2d/0")
    assert (rules[54].scope, rules[54].quantizer_kind, rules[54].spec) == ("[^/.]+", "activations", {"bits": 8})
    assert rules[54].where == f'{BITWIDTH}[54] "/nncf_model_input_0|OUTPUT"'
    assert (rules[55].scope, rules[55].spec) == ("avgpool/adaptive_avg_pool2d/0", {"bits": 4})
    assert rules[-1] == Rule(frozenset(), {"bits": 4}, False, "layer4/2/relu/relu_/2", "activations",
                             f'{BITWIDTH}[124] "ResNet/Sequential[layer4]/Bottleneck[2]/ReLU[relu]/relu__2|OUTPUT"')


def test_translated_scopes_name_the_ops_of_torchvision_resnet50():
    """Every NNCF 2.x scope of the sample names exactly one op of the model it was written for."""
    torchvision = pytest.importorskip("torchvision")
    cfg = load_config(NNCF2 / "resnet50_imagenet_mixed_int_manual.json", recipe="qmlp_w4a4", log=lambda m: None)
    graph = nncf.build_graph(torchvision.models.resnet50().eval(), example_input=torch.zeros(cfg.input_shape))
    rules = bitwidth_rules(cfg)
    check_scopes(rules, GraphRoles(graph))
    ops = [n.node_name for n in graph.get_all_nodes() if n.node_type not in ("nncf_model_const", "nncf_model_output")]
    assert all(sum(bool(re.fullmatch(rule.scope, op)) for op in ops) == 1 for rule in rules)


def test_real_int8_and_detection_samples_load():
    lines = []
    cfg = load_config(NNCF2 / "mobilenet_v2_imagenet_int8.json", log=lines.append)
    assert cfg.recipe.calibration_size == 2560 and cfg.recipe.rules == load_recipe("nncf_default_w8a8").rules
    assert (cfg.model, cfg.pretrained, cfg.input_shape, cfg.num_classes) == ("mobilenet_v2", True, (2, 3, 224, 224),
                                                                              1000)
    assert cfg.training == {"epochs": 5, "batch_size": 256, "lr": 1e-05}
    assert cfg.ignored_keys == ("optimizer.type", "optimizer.schedule_type", "optimizer.steps")
    assert lines == ["config: ignored NNCF 2.x keys: optimizer.type, optimizer.schedule_type, optimizer.steps"]
    # a trailing // comment after a value, with a URL in it, after a string holding '/'
    ssd = load_config(NNCF2 / "ssd300_vgg_voc.json", log=lambda m: None)
    assert (ssd.model, ssd.data, ssd.num_classes, ssd.input_shape) == ("ssd_vgg", "voc", 21, (2, 3, 300, 300))
    assert ssd.training == {"epochs": 290, "batch_size": 256, "lr": 1e-4, "weight_decay": 5e-4}
    assert ssd.ignored_keys == ("batchnorm", "basenet", "preprocessing", "save_freq", "ssd_params", "optimizer.type",
                                "optimizer.schedule_type", "optimizer.steps")
    assert ssd.recipe == dataclasses.replace(load_recipe("nncf_default_w8a8"), name="nncf_default_w8a8+ssd300_vgg_voc")


def test_comments_and_trailing_commas(tmp_path):
    text = ('{\n  // a line comment\n  "model": "a//b/*c*/", /* a block\n  comment */ "epochs": 3, // "trailing"\n'
            '  "dataset": "say \\"//hi\\"",\n  "input_info": {"sample_size": [1, 1, 28, 28,],},\n}\n')
    stripped = strip_json_comments(text)  # blanked in place: JSON error positions stay right
    assert stripped.splitlines()[3] == " " * 12 + ' "epochs": 3, ' + " " * len('// "trailing"')
    assert stripped.splitlines()[5] == '  "input_info": {"sample_size": [1, 1, 28, 28 ] } '
    assert len(stripped) == len(text) and stripped.count("\n") == text.count("\n")
    path = tmp_path / "c.json"
    path.write_text(text)
    cfg = load_config(path, log=lambda m: None)
    assert (cfg.model, cfg.data, cfg.training, cfg.input_shape) == ("a//b/*c*/", 'say "//hi"', {"epochs": 3},
                                                                    (1, 1, 28, 28))
    path.write_text('{\n  // fine\n  "model": "x",\n  "epochs": ,\n}')  # an error keeps its line and column
    with pytest.raises(SpecError, match=r"c\.json: invalid JSON \(comments removed\): Expecting value: line 4 column"):
        load_config(path)


def test_nncf2_keys_are_mapped_or_listed_once():
    lines = []
    cfg = load_config({
        "model": "resmlp_fmnist", "weights": "https://example.com/w.pth", "model_params": {"num_blocks": 2},
        "seed": 3, "workers": 0, "weight_decay": 1e-4, "batch_size_val": 8, "log_dir": "runs", "print_freq": 5,
        "optimizer": {"type": "SGD", "base_lr": 0.1, "optimizer_params": {"momentum": 0.9, "weight_decay": 1e-4}},
        "target_device": "CPU", "disable_compression": False,
        "input_info": [{"sample_size": [1, 1, 28, 28], "filler": "random", "type": "float"}],
        "compression": [{
            "algorithm": "quantization", "overflow_fix": "enable", "export_to_onnx_standard_ops": True,
            "quantize_inputs": True, "quantize_outputs": False, "validate_scopes": False,
            "compression_lr_multiplier": 2,
            "params": {"activations_quant_start_epoch": 1},
            "weights": {"bits": 8, "logarithm_scale": True},
            "initializer": {"batchnorm_adaptation": {"num_bn_adaptation_samples": 0},
                            "range": {"type": "mixed_min_max"},
                            "precision": {"bitwidth_per_scope": [], "dump_init_precision_data": True, "bits": [4, 8]}},
            "ignored_scopes": ["MlpMixer/Sequential[blocks]/ResBlock[1]/NNCFLinear[linear_tokens]/linear_0"],
            "scope_overrides": {"activations": {"MlpMixer/Sequential[blocks]/ResBlock[0]/Affine[norm2]/addcmul_0": {
                "bits": 4, "initializer": {"range": {"type": "mean_percentile", "params": {"max_percentile": 99.5}}}}}},
        }],
        "qmlp": {"recipe": "qmlp_w8a8"}}, log=lines.append)
    assert (cfg.checkpoint, cfg.model_kwargs, cfg.input_shape, cfg.target_device) == (
        "https://example.com/w.pth", {"num_blocks": 2}, (1, 1, 28, 28), "CPU")
    assert cfg.training == {"workers": 0, "seed": 3, "lr": 0.1, "weight_decay": 1e-4}
    assert cfg.ignored_keys == (
        "batch_size_val", "log_dir", "print_freq", "disable_compression",
        "compression.export_to_onnx_standard_ops", "compression.compression_lr_multiplier", "compression.params",
        "compression.initializer.batchnorm_adaptation", "compression.initializer.precision.dump_init_precision_data",
        "compression.initializer.precision.bits", "compression.weights.logarithm_scale", "input_info.filler",
        "optimizer.type", "optimizer.optimizer_params.momentum")
    assert len(lines) == 1 and lines[0].startswith("config: ignored NNCF 2.x keys: batch_size_val, log_dir, ")
    assert "overflow_fix" not in lines[0]  # read: NNCF's 7-bit weight fix becomes half-range weight specs
    assert cfg.recipe.weights.half_range and cfg.recipe.weights.uses_half_range
    assert "compression.initializer.batchnorm_adaptation (a BatchNorm statistics pass" in lines[0]
    assert cfg.recipe.activations.range == RangeSpec("min_max")  # mixed_min_max: per-tensor activations
    assert cfg.ignored_scope.names == ["blocks/1/linear_tokens/linear/0"] and not cfg.ignored_scope.validate
    assert cfg.recipe.rules[-1] == Rule(
        frozenset(), {"bits": 4, "range": {"estimator": "percentile", "percentile": 99.5}}, False,
        "blocks/0/norm2/addcmul/0", "activations",
        'compression.scope_overrides.activations["MlpMixer/Sequential[blocks]/ResBlock[0]/Affine[norm2]/addcmul_0"]')


@pytest.mark.parametrize("scope, name", [
    ("MlpMixer/ModuleList[blocks]/ResBlock[0]/Mlp[mlp_channels]/NNCFLinear[fc1]/linear_0",
     "blocks/0/mlp_channels/fc1/linear/0"),
    ("ResNet/Sequential[layer1]/Bottleneck[0]/ReLU[relu]/relu__2", "layer1/0/relu/relu_/2"),
    ("ResNet/Sequential[layer1]/Bottleneck[0]/__iadd___0", "layer1/0/add_/0"),
    ("ResNet/flatten_0", "/flatten/0"),
    ("Sequential[layer1]/Bottleneck[0]/NNCFConv2d[conv1]/conv2d_0", "layer1/0/conv1/conv2d/0"),
    ("/nncf_model_input_0", "/nncf_model_input_0"),
    ("blocks/0/mlp_channels/fc1/linear/0", None), ("x", None), ("ResNet/layer1/conv1/conv2d_0", None),
])
def test_translate_nncf2_scope(scope, name):
    assert translate_nncf2_scope(scope) == name


def test_data_and_target_device(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "c.json").write_text(json.dumps({"dataset_dir": "imgs"}))
    assert load_config(tmp_path / "c.json").data == str(tmp_path / "imgs")
    assert load_config({"dataset_dir": "imgs"}).data == "imgs"  # no config folder: as given
    assert load_config({"dataset": "Fashion_MNIST"}).data == "fashion-mnist"
    both = load_config({"dataset": "fashionmnist", "dataset_dir": "/d/fmnist"})
    assert (both.data, both.data_dir) == ("fashion-mnist", "/d/fmnist")
    assert load_config({"dataset": "imagenet", "data": "/d/imagenet"}).data == "/d/imagenet"
    with pytest.raises(SpecError, match=r"^dataset 'cifar100' with dataset_dir '/d': only 'imagenet' .*"):
        load_config({"dataset": "cifar100", "dataset_dir": "/d"})
    with pytest.raises(SpecError, match=r"^data and dataset_dir disagree \('/a', '/b'\); give one"):
        load_config({"data": "/a", "dataset_dir": "/b"})
    notes = []
    cfg = load_config({"target_device": "VPU"}, log=notes.append)
    assert cfg.target_device == cfg.recipe.nncf.target_device == "NPU" and notes == []
    assert load_config({"target_device": "CPU_SPR"}).recipe.nncf.target_device == "CPU_SPR"
    assert load_config({}).recipe.nncf.target_device is None


def test_recipe_argument_is_the_default_and_must_not_contradict_the_config():
    assert load_config({}, recipe="qmlp_w4a4").recipe.name == "qmlp_w4a4+config"
    assert load_config({"qmlp": {"recipe": "qmlp_w4a4"}}, recipe="qmlp_w4a4").recipe.name == "qmlp_w4a4+config"
    with pytest.raises(SpecError, match=r"^qmlp\.recipe: the config names 'qmlp_w8a8', the caller 'qmlp_w4a4'"):
        load_config({"qmlp": {"recipe": "qmlp_w8a8"}}, recipe="qmlp_w4a4")


def precision(*entries) -> dict:
    return {"compression": {"algorithm": "quantization",
                            "initializer": {"precision": {"bitwidth_per_scope": list(entries)}}},
            "qmlp": {"recipe": "qmlp_w8a8"}}


BAD_NNCF2 = [
    (with_("compression.initializer.precision", {"type": "hawq", "bits": [4, 8]}),
     r"^compression\.initializer\.precision\.type: 'hawq' \(NNCF 2\.x's automatic bit-width search\) is not supported"),
    (with_("compression.initializer.precision", {"type": "greedy"}),
     r"precision\.type: 'greedy' unknown; choose one of \['manual', 'hawq', 'autoq'\]"),
    (with_("compression.initializer.precision", {"bitwidth_per_scopes": []}),
     r"^compression\.initializer\.precision: unknown key\(s\) \['bitwidth_per_scopes'\].*did you mean"),
    (precision([4, "blocks/0/mlp_channels/fc1/linear/0|WEIGHT", 1]), rf"^{BITWIDTH}\[0\]: expected \[bits, "),
    (precision([2, "blocks/0/mlp_channels/fc1/linear/0|WEIGHT"]), rf"^{BITWIDTH}\[0\]\[0\]: 2 bits are not "
                                                                  r"supported; choose 4 or 8"),
    (precision([8, "blocks/0/mlp_channels/fc1/linear/0"]), r'": end the scope with \|WEIGHT .* or \|OUTPUT / \|INPUT'),
    (precision([8, "MlpMixer/Sequential[blocks]/ResBlock[0]/NNCFLinear[linear_tokens]/linear_0|OUTPUT"]),
     r"the output quantizer of a linear op cannot be told apart from its input quantizer"),
    (precision([8, "blocks/0/add/0|INPUT0"], [4, "blocks/0/add/0|INPUT1"]),
     rf'^{BITWIDTH}\[1\] "blocks/0/add/0\|INPUT1": 4 bits, but entry \[0\] sets 8 for the same activations'),
    (precision([8, "/nncf_model_input_1|OUTPUT"]), r"models with one input only"),
    (precision([8, "/nncf_model_input_0|WEIGHT"]), r"the model input has no weight quantizer"),
    (precision([8, "{re}blocks/(|WEIGHT"]), r'\[0\] "\{re\}blocks/\(\|WEIGHT": invalid regex'),
    (with_("compression.quantize_outputs", True), r"^compression\.quantize_outputs: quantizing the model outputs"),
    (with_("compression.quantize_inputs", "yes"), r"^compression\.quantize_inputs: expected bool"),
    (with_("compression.target_scopes", ["x"]), r"^compression\.target_scopes: quantizing only some scopes"),
    (with_("compression.overflow_fix", "on"), r"^compression\.overflow_fix: 'on' unknown; choose one of \['enable'"),
    (with_("compression.activations.unified_scale_ops", [["a", "b"]]), r"activations\.unified_scale_ops: shared"),
    (with_("compression.weights.ignored_scopes", ["x"]), r"^compression\.weights\.ignored_scopes: per-group scopes"),
    (with_("compression.scope_overrides.activations", {"x": {"signed": True}}), r'\["x"\]\.signed: forcing the sign'),
    (with_("compression.ignored_scopes", ["/nncf_model_input_0"]), r"use compression\.quantize_inputs: false"),
    (with_("qmlp", {"recipe": "qmlp_w4_weight_only"}, precision([4, "x|WEIGHT"])),
     r"^compression\.initializer\.precision: recipe qmlp_w4_weight_only is weight-only"),
    ({"target_device": "cpu"},
     r"^target_device: 'cpu' unknown; choose one of \['ANY', 'CPU', 'GPU', 'NPU', 'CPU_SPR'\]"),
    ({"input_info": {"sample_size": [1, 3], "keyword": "x"}}, r"^input_info\.keyword: inputs passed to forward\(\) by"),
    ({"input_info": {"sample_size": [1, 3], "type": "long"}}, r"^input_info\.type: 'long': only float inputs"),
    ({"disable_compression": True}, r"^disable_compression: true asks for the float model"),
    ({"checkpoint": "a.pth", "weights": "b.pth"}, r"^checkpoint and weights \(NNCF 2\.x's name\) disagree"),
    ({"optimizer": {"base_lr": 0.1, "schedule_params": {"base_lr": 0.2}}},
     r"^optimizer\.base_lr and optimizer\.schedule_params\.base_lr disagree \(0\.1, 0\.2\); give one lr"),
    ({"optimizer": {"base_lr": 0}}, r"^optimizer\.base_lr: must be > 0, got 0"),
    ({"optimizer": ["Adam"]}, r"^optimizer: expected dict"),
    ({"weight_decay": 1e-4, "optimizer": {"weight_decay": 1e-5}},
     r"^weight_decay and optimizer\.weight_decay disagree"),
    ({"epochs": 0}, r"^epochs: must be >= 1, got 0"), ({"num_classes": 0}, r"^num_classes: must be >= 1"),
    ({"pretrained": "yes"}, r"^pretrained: expected bool"), ({"batch_size": 1.5}, r"^batch_size: expected int"),
    ({"model_params": [1]}, r"^model_params: expected dict"),
]


@pytest.mark.parametrize("cfg, message", BAD_NNCF2, ids=[m[:40] for _, m in BAD_NNCF2])
def test_bad_nncf2_keys_name_the_problem(cfg, message):
    lines = []
    with pytest.raises(SpecError, match=message):
        load_config(cfg, log=lines.append)
    assert lines == []  # nothing is logged for a config that fails


BAD_FILES = [
    ("list.json", b"[1, 2]", r"list\.json: expected a JSON object \{\.\.\.\} at the top level, got a list$"),
    ("number.json", b"3", r"number\.json: expected a JSON object \{\.\.\.\} at the top level, got a number \(3\)$"),
    ("deep.json", b"[" * 100_000, r"deep\.json: nested too deeply"),
    ("deep_object.json", b'{"a": ' * 100_000, r"deep_object\.json: nested too deeply"),
    ("latin1.json", '{"model": "café"}'.encode("latin-1"), r"latin1\.json: not UTF-8 text \(byte 0xe9 at offset 14\)"),
    ("binary.json", bytes(range(256)), r"binary\.json: binary data \(NUL bytes at offset 0\), not a JSON text file"),
    ("utf16.json", '{"model": "x"}'.encode("utf-16"), r"utf16\.json: UTF-16 text; save it as UTF-8"),
    ("empty.json", b"  \n", r"empty\.json: empty file"),
    ("twice.json", b'{"model": "a", "model": "b"}', r"twice\.json: key 'model' appears twice in one object"),
    ("nan.json", b'{"epochs": NaN}', r"nan\.json: NaN is not a JSON number"),
    ("open.json", b'{"model": "x" /* oops }', r"open\.json: unterminated /\* comment at line 1"),
    ("digits.json", b'{"epochs": ' + b"9" * 5000 + b"}", r"digits\.json: invalid JSON: Exceeds the limit"),
    ("commas.json", b'{"epochs": 3,,}', r"commas\.json: invalid JSON: Expecting property name"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[name for name, _, _ in BAD_FILES])
def test_bad_file_is_one_spec_error(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SpecError, match=message):
        load_config(tmp_path / name)


def test_huge_and_special_files_are_refused_before_reading(tmp_path):
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(17 * 2**20)  # sparse: nothing to read if the size check comes first
    with pytest.raises(SpecError, match=r"huge\.json: 17825792 bytes is too large for a config \(at most 16777216"):
        load_config(huge)
    with pytest.raises(SpecError, match=r"config .*: not a regular file"):
        load_config(tmp_path)
    with pytest.raises(SpecError, match=r"^config: expected a file path or a dict, got list"):
        load_config([{"model": "x"}])
    big_value = {"model": list(range(100_000))}
    with pytest.raises(SpecError) as e:
        load_config(big_value)
    assert str(e.value).startswith("model: expected str, got list [0, 1, 2") and len(str(e.value)) <= 2000


NNCF2_RESMLP = """{
    // an NNCF 2.x-style config for the zoo ResMLP (jstyleson comments), as a user would port one
    "model": "resmlp_fmnist",
    "input_info": {"sample_size": [1, 1, 28, 28]},
    "num_classes": 10,
    "multiprocessing_distributed": false,  // meaningless here: listed and ignored
    "target_device": "CPU",
    "compression": {
        "algorithm": "quantization",
        "overflow_fix": "disable",
        /* NNCF 2.x manual mixed precision: old-style scopes are translated, new-style names and {re} work too */
        "initializer": {
            "range": {"num_init_samples": 16},
            "batchnorm_adaptation": {"num_bn_adaptation_samples": 0},
            "precision": {"type": "manual", "bitwidth_per_scope": [
                [4, "MlpMixer/Sequential[blocks]/ResBlock[0]/Mlp[mlp_channels]/NNCFLinear[fc1]/linear_0|WEIGHT"],
                [4, "MlpMixer/Sequential[blocks]/ResBlock[1]/Affine[norm1]/addcmul_0|OUTPUT"],
                [4, "TargetType.OPERATOR_POST_HOOK /nncf_model_input_0|OUTPUT"],
                [4, "{re}blocks/1/mlp_channels/fc2/.*|WEIGHT"],
            ]}
        },
    },
    "qmlp": {"recipe": "qmlp_w8a8"}
}
"""


def test_nncf2_config_end_to_end_through_quantize(resmlp, calibration, tmp_path, capsys):
    path = tmp_path / "resmlp_nncf2.json"
    path.write_text(NNCF2_RESMLP)
    report = report_of(quantize(resmlp, calibration, config=path, log=lambda m: None))
    err = capsys.readouterr().err  # load_config's note, printed once
    assert err.count("config: ignored NNCF 2.x keys: multiprocessing_distributed, compression.initializer.") == 1
    four_bit = {r["hook"] for r in report if r["bits"] == 4}
    assert four_bit == {"pre_hooks.blocks/0/mlp_channels/fc1/linear/0__1.0", "post_hooks.blocks/1/norm1/addcmul/0__0.0",
                        "post_hooks.x__0.0", "pre_hooks.blocks/1/mlp_channels/fc2/linear/0__1.0"}
    assert len(report) > len(four_bit) and all(r["bits"] == 8 for r in report if r["hook"] not in four_bit)
    # NNCF 2.x's quantize_inputs: false keeps the model input in float
    no_input = run(resmlp, calibration, config(quantize_inputs=False))
    assert {r["hook"] for r in no_input if r["float"]} == {"post_hooks.x__0.0"} and len(no_input) == len(report)
    # a translated scope that names no op of this model fails when quantize has the model
    with pytest.raises(SpecError, match=rf'{re.escape(BITWIDTH)}\[0\] "MlpMixer/Sequential\[blocks\]/ResBlock\[7\].*'
                                        r"\.scope: regex 'blocks/7/norm1/addcmul/0' matches no op of this model"):
        run(resmlp, calibration,
            precision([4, "MlpMixer/Sequential[blocks]/ResBlock[7]/Affine[norm1]/addcmul_0|OUTPUT"]))


def test_overflow_fix_maps_to_half_range_specs_or_to_nncf():
    def recipe(fix, name="qmlp_w8a8"):
        return load_config({"compression": {"algorithm": "quantization", "overflow_fix": fix},
                            "qmlp": {"recipe": name}}, log=lambda m: None).recipe

    assert recipe("enable").weights.half_range and not recipe("disable").weights.half_range
    first = recipe("first_layer_only")
    assert not first.weights.half_range
    assert first.rules[-1].match == frozenset({"weights", "patch_embedding"}) and first.rules[-1].spec == {
        "half_range": True}
    assert not recipe("disable", "qmlp_w8a8_overflow_fix").weights.half_range  # the config has the last word
    stock = recipe("first_layer_only", "nncf_default_w8a8")  # NNCF's own quantizers: NNCF applies it
    assert stock.nncf.overflow_fix == "first_layer_only" and not stock.weights.half_range
    from nncf.quantization.advanced_parameters import OverflowFix

    from qmlp_nncf.quantization.recipes.nncf_settings import nncf_kwargs

    adv = nncf_kwargs(stock, None)["advanced_parameters"]  # NNCF's fix beside, not instead of, its other settings
    assert adv.overflow_fix == OverflowFix.FIRST_LAYER
    assert adv.activations_quantization_params == nncf_kwargs(recipe(None, "nncf_default_w8a8"), None)[
        "advanced_parameters"].activations_quantization_params
