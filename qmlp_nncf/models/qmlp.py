"""Q-MLP variants registered with timm: LayerNorm, a bounded activation and G token-mixing groups.

- ``qmlp_mixer_fmnist``, ``qmlp_resmlp_fmnist``, ``qmlp_gmlp_fmnist``, ``qmlp_resmlp12_fmnist``: the
  Fashion-MNIST models;
  ``pretrained=True`` loads the zoo checkpoint of the same name.
- ``qmlp_mixer_b16_224``, ``qmlp_resmlp_24_224``, ``qmlp_gmlp_s16_224``: the ImageNet models; random
  init, or ``pretrained=True, pretrained_cfg_overlay=dict(file=PATH)`` with PATH a Q-MLP checkpoint
  or a checkpoint of the *base* model (its weights are converted on load, see
  ``surgery.expand_state_dict``; LayerNorm and the bounded activation then need fine-tuning).

Every builder takes the ``QmlpConfig`` options as keyword arguments (``token_groups=2``,
``activation="learnable_clip"``, ``layernorm=False``, ``clip=(0, 4)``).
"""
from __future__ import annotations

from functools import partial

from timm.layers import GatedMlp
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.mlp_mixer import Affine, MlpMixer, _cfg, checkpoint_filter_fn
from torch import nn

from .mlp_mixer_fmnist import FMNIST_ARGS, fmnist_cfg
from .qmlp_blocks import MULTI_TOKEN_BLOCKS
from .surgery import LN_EPS, QmlpConfig, expand_state_dict

IMAGENET_ARGS = dict(patch_size=16)


def qmlp_filter_fn(state_dict: dict, model: MlpMixer) -> dict:
    """timm ``pretrained_filter_fn``: accepts Q-MLP checkpoints and base-model checkpoints."""
    return expand_state_dict(checkpoint_filter_fn(state_dict, model), model)


def _create(variant: str, family: str, pretrained: bool, args: dict, kwargs: dict) -> MlpMixer:
    cfg = QmlpConfig(**{k: kwargs.pop(k) for k in ("layernorm", "activation", "token_groups", "clip")
                        if k in kwargs})
    block = MULTI_TOKEN_BLOCKS[family]
    block_args = dict(token_groups=cfg.token_groups)
    if "init_values" in args:
        block_args["init_values"] = args.pop("init_values")
    args = dict(args, block_layer=partial(block, **block_args))
    if cfg.activation is not None:
        args["act_layer"] = cfg.act_layer()
    if family == "resmlp":
        args["norm_layer"] = partial(nn.LayerNorm, eps=LN_EPS) if cfg.layernorm else Affine
    if family == "gmlp":
        args["mlp_layer"] = GatedMlp
    return build_model_with_cfg(MlpMixer, variant, pretrained, pretrained_filter_fn=qmlp_filter_fn,
                                feature_cfg=dict(out_indices=kwargs.pop("out_indices", 3), feature_cls="getter"),
                                **dict(args, **kwargs))


default_cfgs = generate_default_cfgs({
    "qmlp_mixer_fmnist.qmlp_zoo": fmnist_cfg("qmlp_mixer_fmnist"),
    "qmlp_resmlp_fmnist.qmlp_zoo": fmnist_cfg("qmlp_resmlp_fmnist"),
    "qmlp_gmlp_fmnist.qmlp_zoo": fmnist_cfg("qmlp_gmlp_fmnist"),
    "qmlp_resmlp12_fmnist.qmlp_zoo": fmnist_cfg("qmlp_resmlp12_fmnist"),
    "qmlp_mixer_b16_224": _cfg(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "qmlp_resmlp_24_224": _cfg(),
    "qmlp_gmlp_s16_224": _cfg(),
})


@register_model
def qmlp_mixer_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """Q-MLP ``mixer_fmnist``: 4 token-mixing MLPs per block, ReLU6."""
    return _create("qmlp_mixer_fmnist", "mixer", pretrained, dict(FMNIST_ARGS, mlp_ratio=(0.5, 4.0)), kwargs)


@register_model
def qmlp_resmlp_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """Q-MLP ``resmlp_fmnist``: LayerNorm instead of Affine, 4 token Linears per block, ReLU6."""
    return _create("qmlp_resmlp_fmnist", "resmlp", pretrained, dict(FMNIST_ARGS, mlp_ratio=4), kwargs)


@register_model
def qmlp_resmlp12_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """Q-MLP ``resmlp12_fmnist`` (12 blocks): LayerNorm, 4 token Linears per block, ReLU6."""
    return _create("qmlp_resmlp12_fmnist", "resmlp", pretrained, dict(FMNIST_ARGS, num_blocks=12, mlp_ratio=4), kwargs)


@register_model
def qmlp_gmlp_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """Q-MLP ``gmlp_fmnist``: 4 spatial-gating projections per block, ReLU6."""
    return _create("qmlp_gmlp_fmnist", "gmlp", pretrained, dict(FMNIST_ARGS, mlp_ratio=4), kwargs)


@register_model
def qmlp_mixer_b16_224(pretrained: bool = False, **kwargs) -> MlpMixer:
    """Q-MLP Mixer-B/16 (12 blocks, width 768)."""
    return _create("qmlp_mixer_b16_224", "mixer", pretrained,
                   dict(IMAGENET_ARGS, num_blocks=12, embed_dim=768), kwargs)


@register_model
def qmlp_resmlp_24_224(pretrained: bool = False, **kwargs) -> MlpMixer:
    """Q-MLP ResMLP-24 (24 blocks, width 384): the paper's 30 M-parameter model."""
    return _create("qmlp_resmlp_24_224", "resmlp", pretrained,
                   dict(IMAGENET_ARGS, num_blocks=24, embed_dim=384, mlp_ratio=4, init_values=1e-5), kwargs)


@register_model
def qmlp_gmlp_s16_224(pretrained: bool = False, **kwargs) -> MlpMixer:
    """Q-MLP gMLP-S (30 blocks, width 256)."""
    return _create("qmlp_gmlp_s16_224", "gmlp", pretrained,
                   dict(IMAGENET_ARGS, num_blocks=30, embed_dim=256, mlp_ratio=6), kwargs)
