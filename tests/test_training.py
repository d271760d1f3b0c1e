"""The training loop on a tiny subset: checkpoints, resume, EMA, distillation, torchrun DDP."""
import os
import subprocess
import sys

import pytest
import torch

from qmlp_nncf.checkpoint import load_model, read_checkpoint
from qmlp_nncf.training import TrainConfig, train

TINY = dict(model="mixer_fmnist", train_subset=256, test_subset=128, batch_size=64, ema_decay=0.9)


def test_checkpoint_carries_architecture_config_and_fingerprint(tmp_path):
    result = train(TrainConfig(out=str(tmp_path), epochs=1, **TINY), log=lambda m: None)
    ckpt = read_checkpoint(tmp_path / "model.pth")
    assert ckpt["arch"] == "mixer_fmnist" and ckpt["config"]["epochs"] == 1
    assert set(ckpt["data_fingerprint"]) == {"train", "test"} and "train_state" not in ckpt
    assert result["top1"] == ckpt["top1"] and 0 <= ckpt["top1"] <= 1
    model, meta = load_model(tmp_path / "model.pth")
    assert meta["params"] == sum(p.numel() for p in model.parameters())
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


class _Crash(Exception):
    pass


def _crash_after_first_epoch(msg):
    if msg.startswith("epoch 1/"):
        raise _Crash


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    train(TrainConfig(out=str(straight), epochs=2, **TINY), log=lambda m: None)
    with pytest.raises(_Crash):
        train(TrainConfig(out=str(resumed), epochs=2, **TINY), log=_crash_after_first_epoch)
    assert not (resumed / "model.pth").exists() and read_checkpoint(resumed / "last.pth")["epoch"] == 1
    train(TrainConfig(out=str(resumed), epochs=2, **TINY), resume=True, log=lambda m: None)
    a, b = read_checkpoint(straight / "model.pth"), read_checkpoint(resumed / "model.pth")
    assert a["history"] == [dict(h, time_s=a["history"][i]["time_s"]) for i, h in enumerate(b["history"])]
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0)


def test_distillation_from_a_teacher(tmp_path):
    train(TrainConfig(out=str(tmp_path / "t"), epochs=1, **TINY), log=lambda m: None)
    result = train(TrainConfig(out=str(tmp_path / "s"), epochs=1, teacher=str(tmp_path / "t" / "model.pth"),
                               init_from=str(tmp_path / "t" / "model.pth"), **TINY), log=lambda m: None)
    assert result["config"]["teacher"].endswith("model.pth")


@pytest.mark.parametrize("bad, match", [(dict(epochs=0), "positive"), (dict(amp="fp8"), "amp must be"),
                                        (dict(ema_decay=1.0), "ema_decay")])
def test_bad_config_is_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(model="mixer_fmnist", out="x", **bad)
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"model": "m", "out": "x", "epoch": 3})


def test_torchrun_two_cpu_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "qmlp_nncf.cli", "train", "--model", "mixer_fmnist", "--out", str(tmp_path), "--epochs", "1",
           "--train-subset", "256", "--test-subset", "128", "--batch-size", "64", "--json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = read_checkpoint(tmp_path / "model.pth")
    assert ckpt["epoch"] == 1 and ckpt["world_size"] == 2
    assert read_checkpoint(tmp_path / "last.pth")["train_state"]["optimizer"]["state"][0]["step"] == 4
