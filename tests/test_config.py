"""NNCF 2.x-style JSON configs: parsing into recipes, validation errors, and end-to-end quantization."""
import copy
import dataclasses
import json
import re

import nncf
import pytest
import timm
import torch

import qmlp_nncf.models  # noqa: F401  (registers the zoo models with timm)
from qmlp_nncf.quantization import Rule, SpecError, load_config, load_recipe, quantize
from qmlp_nncf.quantization.ptq import _check_ignored_scope, _check_scopes
from qmlp_nncf.quantization.range_tuning import RangeTuning
from qmlp_nncf.quantization.roles import GraphRoles, Site
from qmlp_nncf.quantization.specs import QuantizerSpec, RangeSpec

from conftest import REPO

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
    _check_scopes(cfg.recipe.rules, roles)
    _check_ignored_scope(cfg.ignored_scope, roles)


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
    ({**FULL, "log_dir": "x"}, r"^config: unknown key\(s\) \['log_dir'\]; valid keys: \['checkpoint'"),
    (with_("compression.algorithm", "sparsity"), r"compression\.algorithm: 'sparsity' .*\['quantization'\]"),
    (with_("compression.target_device", "CPU"), r"^compression: unknown key\(s\) \['target_device'\]; valid keys"),
    (with_("compression.activations.bits", 3), r"compression\.activations\.bits: 3 bits .*choose 4 or 8"),
    (with_("compression.activations.bits", "8"), r"compression\.activations\.bits: expected int, got str"),
    (with_("compression.weights.per_channel", 1), r"compression\.weights\.per_channel: expected bool"),
    (with_("compression.weights.mode", "affine"), r"compression\.weights\.mode: 'affine' unknown; .*'symmetric'"),
    (with_("compression.weights.signed", True), r"compression\.weights: unknown key\(s\) \['signed'\]"),
    (with_("compression.activations.per_channel", True), r"compression\.activations\.per_channel: .*use false"),
    (with_("compression.preset", "fast"), r"compression\.preset: 'fast' unknown; choose one of \['performance'"),
    (with_("compression.initializer.range.type", "threesigma"),
     r"compression\.initializer\.range\.type: 'threesigma' unknown; choose one of \['min_max'"),
    (with_("compression.initializer.range.params", {"min_percentile": 1.0, "max_percentile": 99.9}),
     r"compression\.initializer\.range\.params: min_percentile 1\.0 and max_percentile 99\.9 must mirror"),
    (with_("compression.initializer.range.params", {"max_percentile": 40}),
     r"compression\.initializer\.range\.params\.max_percentile: .*\(50, 100\]"),
    (with_("compression.initializer.range", [{"type": "min_max"}]), r"compression\.initializer\.range: per-scope"),
    (with_("compression.initializer.batchnorm_adaptation", {}), r"compression\.initializer: unknown key"),
    (with_("compression.initializer.range.num_init_samples", 0), r"num_init_samples: must be >= 1"),
    (with_("qmlp.calibration_size", 100), r"num_init_samples and qmlp\.calibration_size disagree"),
    (with_("qmlp.recipe", "qmlp_w9a9"), r"qmlp\.recipe: unknown recipe 'qmlp_w9a9'; available: .*qmlp_w4a4"),
    (with_("qmlp.recipe", 4), r"qmlp\.recipe: expected str"),
    (with_("qmlp.extra", 1), r"^qmlp: unknown key\(s\) \['extra'\]; valid keys: \['calibration_size', 'range_tuning'"),
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
    (with_("input_info", [{"sample_size": [1, 1, 28, 28]}]), r"input_info: one input only"),
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


def run(model, items, cfg: dict):
    cfg = load_config(cfg)
    return quantize(model, items, cfg.recipe, ignored_scope=cfg.ignored_scope, log=lambda m: None).qmlp_report


def test_scope_overrides_hit_exactly_their_quantizers(resmlp, calibration):
    report = run(resmlp, calibration, config(
        scope_overrides={"activations": {"{re}.*linear_tokens.*": {"bits": 4}},
                         "weights": {"{re}blocks/1/mlp_channels/fc1/.*": {"bits": 4, "per_channel": False}}},
        ignored_scopes=["blocks/0/mlp_channels/fc1/linear/0"]))
    four_bit = {r["hook"] for r in report if r["bits"] == 4}
    token_inputs = {r["hook"] for r in report if "token_mixing_input" in r["roles"]}
    assert token_inputs == {"post_hooks.blocks/0/norm1/addcmul/0__0.0", "post_hooks.blocks/1/norm1/addcmul/0__0.0"}
    fc1_weight = "pre_hooks.blocks/1/mlp_channels/fc1/linear/0__1.0"
    assert four_bit == token_inputs | {fc1_weight}
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
