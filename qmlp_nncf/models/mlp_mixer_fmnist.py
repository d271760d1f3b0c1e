"""Small MLP-Mixer, ResMLP and gMLP for Fashion-MNIST (28x28x1, 10 classes), on timm's ``MlpMixer``.

Registered with timm, so ``timm.create_model("resmlp_fmnist", pretrained=True)`` loads the
checkpoint committed in the zoo. Patch 4 -> 7x7 = 49 tokens, 6 blocks, width 128; ``resmlp12_fmnist``
is the 12-block ResMLP of the same width (the depth study).

``gmixer_fmnist`` and ``resmlp8_fmnist`` are held-out test models for post-training quantization (issue 28): plain
timm configurations, trained outside the zoo and never converted, so that PTQ methods are not tuned to the zoo
alone. Their checkpoints are not committed; ``qmlp train`` makes them (commands in docs/results.md).
"""
from __future__ import annotations

from torch import nn
from timm.layers import GatedMlp, GluMlp
from timm.models import generate_default_cfgs, register_model
from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock, SpatialGatingBlock, _create_mixer

from ..data import MEAN, STD
from ..zoo.registry import checkpoint_path

FMNIST_ARGS = dict(img_size=28, in_chans=1, num_classes=10, patch_size=4, num_blocks=6, embed_dim=128)


def fmnist_cfg(name: str, **kwargs) -> dict:
    """timm pretrained config whose weights file is the zoo checkpoint of ``name``."""
    return dict(file=str(checkpoint_path(name)), num_classes=10, input_size=(1, 28, 28), pool_size=None,
                crop_pct=1.0, interpolation="bilinear", fixed_input_size=True, mean=(MEAN,), std=(STD,),
                first_conv="stem.proj", classifier="head", license="mit", **kwargs)


default_cfgs = generate_default_cfgs({
    "mixer_fmnist.qmlp_zoo": fmnist_cfg("mixer_fmnist"),
    "resmlp_fmnist.qmlp_zoo": fmnist_cfg("resmlp_fmnist"),
    "gmlp_fmnist.qmlp_zoo": fmnist_cfg("gmlp_fmnist"),
    "resmlp12_fmnist.qmlp_zoo": fmnist_cfg("resmlp12_fmnist"),
    "gmixer_fmnist.untrained": {k: v for k, v in fmnist_cfg("gmixer_fmnist").items() if k != "file"},
    "resmlp8_fmnist.untrained": {k: v for k, v in fmnist_cfg("resmlp8_fmnist").items() if k != "file"},
})


@register_model
def mixer_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """MLP-Mixer, 6 blocks of width 128, token MLP 49->64->49, channel MLP 128->512->128."""
    args = dict(FMNIST_ARGS, mlp_ratio=(0.5, 4.0))
    return _create_mixer("mixer_fmnist", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def resmlp_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """ResMLP, 6 blocks of width 128 with Affine pre-norms and GELU, channel MLP ratio 4."""
    args = dict(FMNIST_ARGS, mlp_ratio=4, block_layer=ResBlock, norm_layer=Affine)
    return _create_mixer("resmlp_fmnist", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def gmlp_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """gMLP, 6 spatial-gating blocks of width 128, channel MLP ratio 4."""
    args = dict(FMNIST_ARGS, mlp_ratio=4, block_layer=SpatialGatingBlock, mlp_layer=GatedMlp)
    return _create_mixer("gmlp_fmnist", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def resmlp12_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """ResMLP, 12 blocks of width 128 (``resmlp_fmnist`` twice as deep)."""
    args = dict(FMNIST_ARGS, num_blocks=12, mlp_ratio=4, block_layer=ResBlock, norm_layer=Affine)
    return _create_mixer("resmlp12_fmnist", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def gmixer_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """gMixer (timm's ``gmixer_12_224`` design): Mixer with SiLU-gated GLU MLPs, 6 blocks of width 128,
    token MLP 49->49 (ratio 1), channel MLP ratio 4. A held-out PTQ test model, not in the zoo."""
    args = dict(FMNIST_ARGS, mlp_ratio=(1.0, 4.0), mlp_layer=GluMlp, act_layer=nn.SiLU)
    return _create_mixer("gmixer_fmnist", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def resmlp8_fmnist(pretrained: bool = False, **kwargs) -> MlpMixer:
    """ResMLP, 8 blocks of width 96 with Affine pre-norms, channel MLP ratio 3. A held-out PTQ test model,
    not in the zoo."""
    args = dict(FMNIST_ARGS, num_blocks=8, embed_dim=96, mlp_ratio=3, block_layer=ResBlock, norm_layer=Affine)
    return _create_mixer("resmlp8_fmnist", pretrained=pretrained, **dict(args, **kwargs))
