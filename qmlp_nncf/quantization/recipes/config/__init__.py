"""NNCF-style JSON configs: NNCF 2.x sample configs as users have them, plus a ``qmlp`` key.

NNCF 3 removed ``NNCFConfig``; ``load_config`` reads such a file (``//`` and ``/* */`` comments and
trailing commas allowed, as NNCF 2.x's jstyleson did) into a :class:`QuantizeConfig`: the
:class:`Recipe` (and an ``nncf.IgnoredScope``) for :func:`qmlp_nncf.quantization.quantize`, and the
model / data / training keys of NNCF 2.x's sample scripts. Schema (every key optional, but
``compression`` needs its ``algorithm``; docs/config.md has the complete tables)::

    model        str   timm / zoo name         checkpoint | weights  str  path, relative to the config file
    pretrained   bool  num_classes int         model_params {timm kwargs}
    input_info   {"sample_size": [1, 1, 28, 28]}           (or a list holding this one object)
    dataset | dataset_dir | data   "fashion-mnist", a dataset name or a folder
    epochs, batch_size, workers, seed, weight_decay, optimizer {"base_lr", "weight_decay", ...}
    target_device  "ANY" | "CPU" | "GPU" | "NPU" | "CPU_SPR"  (NNCF 2.x's "VPU" = NPU, "TRIAL" = ANY)
    compression  {"algorithm": "quantization",                (or a list holding this one object)
                  "preset": "performance" | "mixed",
                  "initializer": {"range": {"num_init_samples": 300,
                                            "type": "min_max" | "mean_min_max" | "percentile",
                                            "params": {"min_percentile": 0.1, "max_percentile": 99.9}},
                                  "precision": {"type": "manual",
                                                "bitwidth_per_scope": [[4, "SCOPE|WEIGHT"], [8, "SCOPE|OUTPUT"]]}},
                  "weights" | "activations": {"bits": 4 | 8, "mode": "symmetric" | "asymmetric",
                                              "per_channel": bool},
                  "scope_overrides": {"weights": {SCOPE: {bits, mode, per_channel}},
                                      "activations": {SCOPE: {bits, mode, range: {type, params}}}},
                  "ignored_scopes": [SCOPE, ...], "validate_scopes": bool,
                  "quantize_inputs": bool, "quantize_outputs": false}
    qmlp         {"recipe": NAME or path.json, "rules": [rule, ...], "calibration_size": 300,
                  "range_tuning": {"steps": 300, "lr": 0.001, "batch_size": 64, "seed": 0,
                                   "weight_rounding_lr": 0.0003, "drop_prob": 0.5, "block_loss": 1.0,
                                   "scope": "model" | "block"} | false,
                  "error_correction": {"ridge": 0.1, "rounding": "gptq", ...} | true | false,
                  "reparameterize": {"strength": 1.0, "min_ratio": 0.01} | true | false}

Semantics: start from ``qmlp.recipe`` (default ``nncf_default_w8a8``, or ``load_config(recipe=...)``)
and override it. ``preset`` sets NNCF's preset and the default modes (both: symmetric weights;
performance: symmetric activations, mixed: asymmetric); an explicit ``mode`` wins.
``initializer.range`` becomes the default activation range (``percentile``: NNCF 2.x's mirror-image
pair ``min/max_percentile``, kept as ``max_percentile``); ``num_init_samples`` the calibration size.
``weights``/``activations`` override the recipe's default specs. ``qmlp.rules`` are appended to the
recipe's rules, then one rule per ``scope_overrides`` entry, restricted to its kind of quantizer,
then one bits rule per ``bitwidth_per_scope`` entry (later rules win: op-name overrides beat role
rules, NNCF 2.x's manual precision beats both). ``qmlp.range_tuning`` replaces the recipe's range
tuning (``{}``: the defaults) or, with ``false``, turns it off; ``qmlp.error_correction`` and
``qmlp.reparameterize`` do the same for those steps (``true``: their defaults).

SCOPE is ``{re}REGEX``, an exact op name as ``nncf.build_graph`` lists it
(``blocks/0/mlp_channels/fc1/linear/0``), or an NNCF 2.x scope name, translated to the NNCF 3 op
name: ``MlpMixer/ModuleList[blocks]/ResBlock[0]/Mlp[mlp_channels]/NNCFLinear[fc1]/linear_0`` ->
``blocks/0/mlp_channels/fc1/linear/0`` (the model class is dropped, ``Type[name]`` -> ``name``,
``op_N`` -> ``op/N``, ``__add__`` -> ``add``, ``__iadd__`` -> ``add_`` ...; ``/nncf_model_input_0``
is the model's input). A scope override's regex must match the whole name of the op the quantizer
sits on or of a Linear it feeds; ``ignored_scopes`` go to ``nncf.IgnoredScope`` (regex matched from
the start of the name) and remove an op's weight and input quantizers. Scopes that match nothing
fail in ``quantize``, which has the model.

NNCF 2.x keys that mean nothing here (distributed training, logging, export flags, schedules,
``overflow_fix``, ``batchnorm_adaptation`` ...) are listed in ``QuantizeConfig.ignored_keys`` and
logged once; NNCF 2.x keys that would change the quantization and cannot be honoured (``signed``,
``target_scopes``, HAWQ / AutoQ precision search, ``quantize_outputs: true`` ...) are errors, as
are unknown keys. The ``nncf_*`` baseline recipes keep NNCF's own quantizers (``recalibrate:
false``): there the activation mode picks NNCF's preset, the range becomes NNCF's global estimator,
and otherwise only ``bits`` can change. Every error is one :class:`SpecError` naming the place
(``compression.activations.bits``) and the valid choices.
"""
from .loader import DEFAULT_RECIPE, QuantizeConfig, load_config
from .nncf_scopes import translate_nncf2_scope
from .reader import parse_config_text, read_config_file, strip_json_comments

__all__ = ["QuantizeConfig", "load_config", "DEFAULT_RECIPE", "read_config_file", "parse_config_text",
           "strip_json_comments", "translate_nncf2_scope"]
