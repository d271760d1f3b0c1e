"""Q-MLP blocks: bounded activations, multi token-mixing groups, NNCF node names and quantizers."""
import re
from functools import partial

import pytest
import torch
from timm.layers import GatedMlp
from timm.models.mlp_mixer import MlpMixer

from qmlp_nncf.models.qmlp_blocks import (Clip, LearnableClip, MultiSpatialGatingBlock, MultiTokenMixerBlock,
                                          MultiTokenResBlock, bounded_activation)

FAMILY_BLOCKS = {"mixer": MultiTokenMixerBlock, "resmlp": MultiTokenResBlock, "gmlp": MultiSpatialGatingBlock}
# the token-mixing Linear of group k in block b, as NNCF names it
GROUP_LINEAR = re.compile(r"^blocks/(\d+)/(?:mlp_tokens/(\d+)/fc1|linear_tokens/(\d+)|mlp_channels/gate/proj/(\d+))"
                          r"/linear/0$")


pytestmark = pytest.mark.usefixtures("one_thread")


def small_mixer(family: str, groups: int = 4, blocks: int = 2) -> MlpMixer:
    return MlpMixer(num_classes=10, img_size=28, in_chans=1, patch_size=4, num_blocks=blocks, embed_dim=64,
                    mlp_ratio=4 if family != "mixer" else (0.5, 4.0),
                    block_layer=partial(FAMILY_BLOCKS[family], token_groups=groups),
                    **({"mlp_layer": GatedMlp} if family == "gmlp" else {})).eval()


# ---------------------------------------------------------------- activations
def test_relu6_and_clip_are_bounded():
    x = torch.linspace(-10, 10, 101)
    assert torch.equal(bounded_activation("relu6")()(x), torch.clamp(x, 0, 6))
    assert torch.equal(bounded_activation("clip", (-1.0, 4.0))()(x), torch.clamp(x, -1, 4))


def test_learnable_clip_forward_and_gradients():
    act = LearnableClip(init=2.0)
    x = torch.tensor([-1.0, 0.5, 1.5, 2.0, 3.0, 5.0], requires_grad=True)
    y = act(x)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.5, 1.5, 2.0, 2.0, 2.0]))
    y.sum().backward()
    # d/dx: 1 strictly inside (lo, clip_val), 0 below and above; the tie at the bound is shared
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 0.5, 0.0, 0.0]))
    # d/dclip_val: one per element above the bound (+0.5 for the tie)
    assert act.clip_val.grad.item() == pytest.approx(2.5)


def test_learnable_clip_bound_trains():
    act = LearnableClip(init=1.0)
    opt = torch.optim.SGD(act.parameters(), lr=0.1)
    x = torch.linspace(0, 4, 50)
    for _ in range(40):  # the target needs a bound of 3: the bound grows towards it
        loss = ((act(x) - torch.clamp(x, 0, 3)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert 2.5 < act.clip_val.item() < 3.2


@pytest.mark.parametrize("bad", [lambda: bounded_activation("gelu6"), lambda: Clip(2.0, 1.0),
                                 lambda: LearnableClip(init=0.0, lo=0.0), lambda: bounded_activation("clip", (3, 3))])
def test_bad_activation_arguments(bad):
    with pytest.raises(ValueError):
        bad()


# ---------------------------------------------------------------- groups
@pytest.mark.parametrize("family", FAMILY_BLOCKS)
def test_groups_must_divide_channels(family):
    with pytest.raises(ValueError, match="does not divide"):
        FAMILY_BLOCKS[family](64, 49, token_groups=3)
    with pytest.raises(ValueError, match="positive integer"):
        FAMILY_BLOCKS[family](64, 49, token_groups=0)


def test_group_k_mixes_only_its_channels():
    block = MultiTokenResBlock(8, 5, token_groups=2, init_values=1.0)
    with torch.no_grad():
        for lin in block.linear_tokens:
            lin.weight.zero_()
            lin.bias.zero_()
        block.linear_tokens[1].weight.copy_(torch.eye(5))
        block.mlp_channels.fc2.weight.zero_()
        block.mlp_channels.fc2.bias.zero_()
    x = torch.randn(1, 5, 8)
    delta = block(x) - x
    assert torch.allclose(delta[..., :4], torch.zeros(1, 5, 4))  # group 0 maps to zero
    assert torch.allclose(delta[..., 4:], block.norm1(x)[..., 4:])  # group 1 is the identity


@pytest.mark.parametrize("family", FAMILY_BLOCKS)
def test_nncf_graph_has_one_named_token_linear_per_group(family):
    import nncf

    model = small_mixer(family, groups=4, blocks=2)
    graph = nncf.build_graph(model, example_input=torch.randn(1, 1, 28, 28))
    found = []
    for node in graph.get_all_nodes():
        m = GROUP_LINEAR.match(node.node_name)
        if m:
            assert node.metatype.__name__ == "PTLinearMetatype"
            found.append((int(m.group(1)), int(next(g for g in m.groups()[1:] if g is not None))))
    assert sorted(found) == [(b, g) for b in range(2) for g in range(4)]


def _activation_quantizers(q) -> dict[str, object]:
    from nncf.torch.function_hook import get_hook_storage

    return {name: module for name, module in get_hook_storage(q).named_hooks()
            if not name.endswith("__1.0")}  # port 1 = weights


@pytest.mark.parametrize("family", FAMILY_BLOCKS)
def test_nncf_keeps_one_input_quantizer_per_group(family):
    """``narrow`` stops NNCF's propagation: the per-group quantizers are not merged at the LN output."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    model = small_mixer(family, groups=4, blocks=2)
    data = nncf.Dataset([torch.randn(1, 1, 28, 28) for _ in range(3)])
    q = nncf.quantize(model, data, subset_size=3, model_type=nncf.ModelType.TRANSFORMER,
                      advanced_parameters=AdvancedQuantizationParameters(
                          smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)))
    quantizers = _activation_quantizers(q)
    per_group = {}
    for name, module in quantizers.items():
        m = re.search(r"blocks/(\d+)/.*/narrow/(\d+)__0\.0$", name)
        if m:
            per_group[int(m.group(1)), int(m.group(2))] = module
    assert sorted(per_group) == [(b, g) for b in range(2) for g in range(4)]
    assert len({id(m) for m in per_group.values()}) == 8  # distinct quantizer objects
    assert not any("norm1/layer_norm" in n or "gate/norm/layer_norm" in n for n in quantizers)
