"""Growing a model deeper (progressive stacking) and the 12-block ResMLP; half-precision zoo storage."""
import pytest
import timm
import torch

import qmlp_nncf.models  # noqa: F401
from qmlp_nncf.models.depth import grow_model, grow_state_dict, num_blocks, source_of

torch.set_num_threads(1)


def trained_like(name, **kw):
    """A random model whose residual branches are not negligible (as after training)."""
    torch.manual_seed(0)
    model = timm.create_model(name, **kw).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(("ls1", "ls2")):
                p.fill_(0.2)
    return model


def test_source_blocks():
    assert source_of(12, 6) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert source_of(3, 2) == [0, 0, 1]
    with pytest.raises(ValueError, match="must be deeper"):
        source_of(2, 3)


@pytest.mark.parametrize("family, shallow, deep", [("resmlp", "resmlp_fmnist", "resmlp12_fmnist"),
                                                   ("mixer", "mixer_fmnist", "mixer_fmnist"),
                                                   ("gmlp", "gmlp_fmnist", "gmlp_fmnist")])
def test_grown_model_starts_near_the_shallow_one(family, shallow, deep):
    src = trained_like(shallow, num_blocks=3)
    grown = grow_model(timm.create_model(deep, num_blocks=6).eval(), src, family)
    sd = grown.state_dict()
    assert num_blocks(sd) == 6
    norm = {"resmlp": "norm1.alpha", "mixer": "norm1.weight", "gmlp": "norm.weight"}[family]
    assert torch.equal(sd[f"blocks.5.{norm}"], src.state_dict()[f"blocks.2.{norm}"])  # block 5 copies block 2
    naive = timm.create_model(deep, num_blocks=6).eval()  # the same copies, residual branches not rescaled
    naive.load_state_dict({k: v for k, v in src.state_dict().items() if not k.startswith("blocks.")}
                          | {f"blocks.{j}.{k.split('.', 2)[2]}": v for k, v in src.state_dict().items()
                             if k.startswith("blocks.") for j in (2 * int(k.split(".")[1]), 2 * int(k.split(".")[1]) + 1)})
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = src.forward_features(x)  # the head is zero at init
        err_grown = (grown.forward_features(x) - ref).norm() / ref.norm()
        err_naive = (naive.forward_features(x) - ref).norm() / ref.norm()
    assert err_grown < err_naive  # the 1/repeats scaling keeps the function closer to the shallow model's


def test_grow_errors():
    with pytest.raises(ValueError, match="unknown family"):
        grow_state_dict(timm.create_model("resmlp_fmnist").state_dict(), 12, "vit")
    with pytest.raises(ValueError, match="no blocks"):
        num_blocks({"head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="same width and family"):
        grow_model(timm.create_model("resmlp12_fmnist"), timm.create_model("resmlp_fmnist", embed_dim=64), "resmlp")


def test_resmlp12_and_its_qmlp_variant_are_registered():
    deep = timm.create_model("resmlp12_fmnist")
    assert len(deep.blocks) == 12 and deep.blocks[0].linear_tokens.in_features == 49
    q = timm.create_model("qmlp_resmlp12_fmnist")
    assert len(q.blocks) == 12 and isinstance(q.blocks[0].norm1, torch.nn.LayerNorm)


def test_train_grow_from_rejects_init_from_too():
    from qmlp_nncf.training import TrainConfig

    with pytest.raises(ValueError, match="choose one"):
        TrainConfig(model="resmlp12_fmnist", out="x", grow_from="a.pth", init_from="b.pth")


def test_large_zoo_checkpoints_are_stored_in_half(tmp_path, monkeypatch):
    """release: a checkpoint over HALF_ABOVE_MB is stored with float16 weights, loads back as float32, and the
    zoo records its curve."""
    from qmlp_nncf.checkpoint import load_model, read_checkpoint, save_checkpoint
    from qmlp_nncf.training import release as rel
    from qmlp_nncf.zoo import registry

    monkeypatch.setattr(registry, "ZOO_DIR", tmp_path / "zoo")
    monkeypatch.setattr(registry, "INDEX", tmp_path / "zoo" / "zoo.json")
    monkeypatch.setattr(rel, "HALF_ABOVE_MB", 0.5)
    model = trained_like("resmlp_fmnist", num_blocks=2)
    run = tmp_path / "model.pth"
    save_checkpoint(run, {"state_dict": model.state_dict(), "arch": "resmlp_fmnist", "model_kwargs": {"num_blocks": 2},
                          "top1": 0.5, "history": [{"epoch": 1, "top1": 0.4}, {"epoch": 2, "top1": 0.5}],
                          "config": {"test_subset": 100}})
    entry = rel.release("resmlp_fmnist", run, {"params": 1, "top1": 0.5, "epoch": 2, "train_time_s": 1.0}, "cmd")
    stored = read_checkpoint(entry.checkpoint)
    assert stored["stored_dtype"] == "float16" and entry.checkpoint.stat().st_size < run.stat().st_size * 0.6
    assert all(v.dtype == torch.float16 for v in stored["state_dict"].values() if v.is_floating_point())
    w = load_model(entry.checkpoint)[0].blocks[0].mlp_channels.fc1.weight
    assert w.dtype == torch.float32 and torch.equal(w, model.blocks[0].mlp_channels.fc1.weight.half().float())
    recorded = registry.get_entry("resmlp_fmnist")
    assert recorded.top1 == 0.5 and recorded.extra["curve_top1"] == [0.4, 0.5]  # a subset run keeps its top-1
    assert recorded.extra["stored_dtype"] == "float16"


def test_depth_rows_and_four_bit_table():
    from qmlp_nncf.benchmark.depth import depth_rows, four_bit, main, markdown

    ranges = [{"block": b, "depth_group": "token_mixing_input", "max_abs": m, "p99.99": m / 2}
              for b, m in [(0, 2.0), (1, 8.0), (2, 4.0)]] + [{"block": None, "depth_group": "x", "max_abs": 99.0,
                                                                  "p99.99": 9.0}]
    (row,) = depth_rows("m", ranges, 3)
    assert (row["first_max_abs"], row["last_max_abs"], row["max_max_abs"], row["peak_block"]) == (2.0, 4.0, 8.0, 1)
    assert row["last_over_first_p99.99"] == pytest.approx(2.0)
    acc = {"floats": [{"model": "m", "top1": 0.9, "base": None}, {"model": "q", "top1": 0.9, "base": "m"}],
           "summary": [{"model": "m", "recipe": "nncf_transformer_w4a4", "mode": "ptq", "torch_top1": 0.86, "seeds": 3,
                        "torch_top1_sd": 0.002},
                       {"model": "q", "recipe": "qmlp_w4a8", "mode": "ptq", "torch_top1": 0.895, "seeds": 3},
                       {"model": "q", "recipe": "qmlp_w4a4", "mode": "ptq", "torch_top1": 0.89, "seeds": 3}]}
    acc["summary"].append({"model": "q", "recipe": "nncf_transformer_w4a4", "mode": "ptq", "torch_top1": 0.87})
    (g,) = four_bit([acc], ["m", "q"])  # a Q-MLP model gets no line of its own: it is on its base's
    assert g["qmlp"]["recipe"] == "qmlp_w4a8" and g["gap_pt"] == pytest.approx(3.5)
    table = markdown({"rows": [row], "four_bit": [g], "calibration_size": 8, "seed": 0})
    assert "| m | 3 | token_mixing_input | 2.00 | 4.00 | 8.00 (1) | 2.00 |" in table and "86.00 ± 0.20 (nncf_transformer_w4a4, 3 seeds)" in table
    assert main(["--model", "resmlp_fmnist", "--calibration-size", "0"]) == 2
