"""Bring your own model and data: ImageFolder sources, timm models and weights files, the five-command flow
on real images (Fashion-MNIST as PNG folders, the 20 foolbox ImageNet images), and every bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qmlp_nncf.cli import main
from qmlp_nncf.data import DataError, calibration_subset, foolbox_imagenet_samples
from qmlp_nncf.sources import DataOptions, DataSource, ModelSource, parse_model_kwargs

from conftest import REPO

VAL_IMAGES = 1000  # the first test images, written as PNG files
CALIBRATION = 64  # quantize: all of NNCF's items and the post-pass's are these images


def run(capsys, *argv) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


@pytest.fixture(scope="module")
def fmnist_png(tmp_path_factory, fmnist_train, fmnist_test):
    """Fashion-MNIST as an ImageFolder of PNGs: train/ = the calibration images the IDX path draws,
    val/ = the first test images; class folders are the integer labels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("fmnist_png")
    calib = calibration_subset(fmnist_train, CALIBRATION)
    for split, ds, indices in (("train", fmnist_train, calib.indices), ("val", fmnist_test, range(VAL_IMAGES))):
        for i in indices:
            folder = root / split / str(int(ds.labels[i]))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.images[i, 0].numpy(), mode="L").save(folder / f"{i:05d}.png")
    return root


@pytest.mark.slow  # 55 s; the folder path itself runs in test_five_command_flow_on_imagenet_images
def test_png_folder_gives_the_idx_predictions(fmnist_png, capsys, tmp_path, one_thread):
    """eval, quantize and eval --ir through the PNG folder match the IDX path on the same images."""
    code, idx = run(capsys, "eval", "--model", "resmlp_fmnist", "--limit", str(VAL_IMAGES))
    code2, folder = run(capsys, "eval", "--model", "resmlp_fmnist", "--data", str(fmnist_png))
    assert code == code2 == 0 and folder["n"] == idx["n"] == VAL_IMAGES
    assert folder["top1"] == idx["top1"] and folder["loss"] == pytest.approx(idx["loss"], rel=1e-6)

    common = ["quantize", "--model", "resmlp_fmnist", "--recipe", "qmlp_w8a8", "--calibration-size", str(CALIBRATION)]
    code, qf = run(capsys, *common, "--data", str(fmnist_png), "--out", str(tmp_path / "folder"))
    code2, qi = run(capsys, *common, "--limit", str(VAL_IMAGES), "--out", str(tmp_path / "idx"))
    assert code == code2 == 0, (qf, qi)
    assert qf["calibration"].endswith("train") and qf["data"].endswith("val") and qf["n"] == VAL_IMAGES
    assert abs(qf["top1"] - qi["top1"]) <= 0.001  # same 64 images, another order: same ranges up to rounding

    code, ir_folder = run(capsys, "eval", "--ir", qf["ir"], "--data", str(fmnist_png))
    code2, ir_idx = run(capsys, "eval", "--ir", qf["ir"], "--limit", str(VAL_IMAGES))
    assert code == code2 == 0 and ir_folder["top1"] == ir_idx["top1"] and ir_folder["n"] == VAL_IMAGES
    from qmlp_nncf.hardware import cpu_capabilities

    # torch fake-quant vs OpenVINO: within 0.3 pt with VNNI int8 kernels; 0.2-0.4 pt measured on AVX2-only CPUs
    assert abs(ir_folder["top1"] - qf["top1"]) <= (0.003 if cpu_capabilities().vnni else 0.01)


def _prototype_weights(path: Path, root: Path, damp: float = 1.0, arch: str = "resmlp_12_224") -> Path:
    """A random 224-px timm model whose head maps each of the 20 images to its own ImageNet class (centred,
    normalised features as class prototypes): float top-1 1.0 only if the folder labels map correctly.
    ResMLP-12, whose layer scales (0.1) keep a random net well conditioned: on a random Mixer-S/32, OpenVINO's
    int8 execution drifts from torch fake-quant by ~3x the quantization error itself (stock NNCF recipes too;
    with the CPU plugin's low-precision transformations off the two agree), and 10 images then flip."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(arch).eval()
    with torch.no_grad():
        for block in model.blocks if damp != 1.0 else ():
            block.mlp_tokens.fc2.weight.mul_(damp)
            block.mlp_channels.fc2.weight.mul_(damp)
    items = [DataSource(str(root)).dataset(s, model) for s in ("train", "val")]
    xs = torch.stack([ds[i][0] for ds in items for i in range(len(ds))])
    labels = [ds[i][1] for ds in items for i in range(len(ds))]
    with torch.no_grad():
        f = model.forward_head(model.forward_features(xs), pre_logits=True)
        mean = f.mean(0)
        f = torch.nn.functional.normalize(f - mean, dim=1)
        model.head.weight.zero_()
        for feat, label in zip(f, labels):
            model.head.weight[label] = 30 * feat  # a class in both splits: the val image (last) wins
        model.head.bias.copy_(-model.head.weight @ mean)  # logits = W (f - mean)
    save_file(model.state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    return foolbox_imagenet_samples(tmp_path_factory.mktemp("imagenet") / "root", split=True, wnids=True)


def test_five_command_flow_on_imagenet_images(imagenet_root, capsys, tmp_path):
    """convert -> torchrun fine-tune -> quantize with an NNCF-style config -> export to an OVMS layout
    -> benchmark, on a 224-px timm model and the 20 real ImageNet images (wnid folders, train/ + val/)."""
    weights = _prototype_weights(tmp_path / "resmlp_12.safetensors", imagenet_root)
    data = ["--data", str(imagenet_root)]
    code, conv = run(capsys, "convert", "--model", "resmlp_12_224", "--pretrained-file", str(weights), *data,
                     "--activation", "none", "--no-layernorm", "--out", str(tmp_path / "conv.pth"))
    assert code == 0, conv
    assert conv["base_top1"] == 1.0 and conv["images"] == 10  # wnid folders -> the standard 1000-class indices
    assert conv["exact_part_max_abs_diff"] < 1e-4 and conv["top1_before_finetune"] == 1.0

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ft = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "qmlp_nncf",
                         "finetune", "--converted", str(tmp_path / "conv.pth"), *data, "--out", str(tmp_path / "ft"),
                         "--epochs", "1", "--batch-size", "2", "--lr", "1e-6", "--threads", "1", "--json"],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert ft.returncode == 0, ft.stderr[-2000:]
    lines = [ln for ln in ft.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank 0 only
    assert json.loads(lines[0])["top1"] == 1.0
    ckpt = torch.load(tmp_path / "ft" / "model.pth", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["data"]["spec"] == str(imagenet_root)

    config = tmp_path / "cfg.json"
    config.write_text("// NNCF 2.x style, with comments\n" + json.dumps({
        "input_info": {"sample_size": [1, 3, 224, 224]},
        "compression": {"algorithm": "quantization", "initializer": {"range": {"num_init_samples": 10}}},
        "qmlp": {"recipe": "qmlp_w8a8"}}))
    code, q = run(capsys, "quantize", "--checkpoint", str(tmp_path / "ft" / "model.pth"), *data,
                  "--config", str(config), "--out", str(tmp_path / "q"))
    assert code == 0, q
    assert q["calibration_items"] == 10 and q["n"] == 10 and q["top1"] >= 0.8

    code, exp = run(capsys, "export", "--checkpoint", q["checkpoint"], *data, "--ovms-repo",
                    str(tmp_path / "models"), "--ovms-name", "mixer", "--evaluate")
    assert code == 0, exp
    assert exp["xml"].endswith("models/mixer/1/model.xml")
    acc = json.loads(exp["metadata"]["accuracy"])
    assert acc["agreement"] >= 0.99 and acc["ir_top1"] == q["top1"] and acc["n"] == 10
    assert json.loads(exp["metadata"]["data_config"])["input_size"] == [3, 224, 224]
    code, ir = run(capsys, "eval", "--ir", exp["xml"], *data)
    assert code == 0 and ir["top1"] == acc["ir_top1"]

    from qmlp_nncf.benchmark.ov_latency import main as bench

    assert bench(["--ir", exp["xml"], "--device", "CPU", "--hint", "f32", "--batch", "2", "--quick",
                  "--no-progress", "--json", str(tmp_path / "lat.json")]) == 0
    rows = json.loads((tmp_path / "lat.json").read_text())["rows"]
    assert rows and all(r["model"] == "resmlp_12_224" for r in rows)


def test_timm_model_with_kwargs_on_fashion_mnist(capsys):
    code, r = run(capsys, "eval", "--model", "mixer_s32_224", "--model-kwargs", "img_size=64", "in_chans=1",
                  "num_classes=10", "--limit", "8")
    assert code == 0 and r["n"] == 8
    ds = DataSource().dataset("val", ModelSource("mixer_s32_224", model_kwargs=parse_model_kwargs(
        ["img_size=64", "in_chans=1", "num_classes=10"])).load().model)
    assert ds[0][0].shape == (1, 64, 64)


def test_parse_model_kwargs():
    assert parse_model_kwargs(["img_size=64", "mlp_ratio=(0.5, 4.0)", "act_layer=relu", "flag=True"]) == {
        "img_size": 64, "mlp_ratio": (0.5, 4.0), "act_layer": "relu", "flag": True}
    with pytest.raises(ValueError, match="not key=value"):
        parse_model_kwargs(["img_size"])


# ---------------------------------------------------------------- bad input: one clear error, nothing written
def bad(capsys, tmp_path, *argv) -> str:
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out = run(capsys, *argv)
    assert code == 2, out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    return out["error"]


def test_bad_data_inputs(capsys, tmp_path, imagenet_root, fmnist_png):
    out = str(tmp_path / "out")
    err = bad(capsys, tmp_path, "quantize", "--model", "resmlp_fmnist", "--recipe", "qmlp_w8a8",
              "--data", str(fmnist_png / "val"), "--out", out)
    assert "val split" in err and "train/" in err
    err = bad(capsys, tmp_path, "eval", "--model", "mixer_s32_224", "--data", str(fmnist_png))
    assert "grayscale" in err and "--convert-channels" in err
    err = bad(capsys, tmp_path, "eval", "--model", "resmlp_fmnist", "--data", str(imagenet_root))
    assert "colour" in err and "--convert-channels" in err
    err = bad(capsys, tmp_path, "eval", "--model", "mixer_s32_224", "--model-kwargs", "num_classes=10",
              "--data", str(imagenet_root))
    assert "head has 10 classes" in err and "num_classes=" in err
    err = bad(capsys, tmp_path, "eval", "--model", "resmlp_fmnist", "--input-size", "1", "32", "32")
    assert "cannot take inputs of 1x32x32" in err and "takes 1x28x28" in err
    (tmp_path / "empty" / "train").mkdir(parents=True)
    err = bad(capsys, tmp_path, "eval", "--model", "resmlp_fmnist", "--data", str(tmp_path / "empty"))
    assert "no val/ folder" in err
    # the converting transform: gray -> RGB for a 3-channel model
    model = ModelSource("mixer_s32_224").load().model
    ds = DataSource(str(fmnist_png), options=DataOptions(convert_channels=True)).dataset("val", model)
    assert ds[0][0].shape == (3, 224, 224)


def test_bad_model_inputs(capsys, tmp_path):
    import timm
    from safetensors.torch import save_file

    err = bad(capsys, tmp_path, "eval", "--model", "mixer_s32_224", "--model-kwargs", "colour=1")
    assert "takes no argument 'colour'" in err and "num_blocks" in err
    err = bad(capsys, tmp_path, "eval", "--model", "resmlp_12_224", "--model-kwargs", "num_blocks=2")
    assert "fixes 'num_blocks'" in err
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("mixer_s32_224").state_dict(), str(weights))
    err = bad(capsys, tmp_path, "eval", "--model", "resmlp_12_224", "--pretrained-file", str(weights))
    assert "weights do not fit resmlp_12_224" in err and "missing keys" in err
    err = bad(capsys, tmp_path, "eval", "--model", "mixer_s32_224", "--pretrained-file", str(tmp_path / "no.pth"))
    assert "does not exist" in err
    err = bad(capsys, tmp_path, "export", "--model", "resmlp_fmnist", "--recipe", "qmlp_w8a8", "--random-calibration",
              "--evaluate", "--out", str(tmp_path / "ir"))
    assert "real data" in err


def test_config_input_info_must_fit_the_model(capsys, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"input_info": {"sample_size": [1, 3, 224, 224]}, "qmlp": {"recipe": "qmlp_w8a8"}}))
    err = bad(capsys, tmp_path, "quantize", "--model", "resmlp_fmnist", "--config", str(cfg),
              "--out", str(tmp_path / "q"))
    assert "input_info.sample_size [1, 3, 224, 224] does not fit resmlp_fmnist" in err


# ---------------------------------------------------------------- devices, entry point
def test_device_and_backend_selection(monkeypatch):
    from qmlp_nncf import device as d

    assert d.select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert d.ddp_backend(torch.device("cpu")) == "gloo" and d.ddp_backend(torch.device("cuda", 0)) == "nccl"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        d.select_device("cuda")
    with pytest.raises(ValueError, match="choose auto, cpu"):
        d.select_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert d.select_device("auto", local_rank=3) == torch.device("cuda", 1)  # torchrun: one GPU per process
    assert d.select_device("cuda:0") == torch.device("cuda", 0)
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert d.autocast_dtype(gpu, "auto") == torch.bfloat16 and d.autocast_dtype(gpu, "fp16") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert d.autocast_dtype(gpu, "auto") == torch.float16 and d.autocast_dtype(gpu, "off") is None
    with pytest.raises(ValueError, match="fp16 is for GPUs"):
        d.autocast_dtype(torch.device("cpu"), "fp16")
    assert d.default_workers(in_memory=True) == 0


def test_python_dash_m_is_the_qmlp_command():
    r = subprocess.run([sys.executable, "-m", "qmlp_nncf", "zoo", "--json"], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-1000:]
    assert {e["name"] for e in json.loads(r.stdout)} >= {"resmlp_fmnist", "qmlp_resmlp_fmnist"}


def test_train_split_smaller_than_the_batch_is_an_error(tmp_path):
    from qmlp_nncf.training import TrainConfig, train

    with pytest.raises(ValueError, match="has 4 images, fewer than the batch size 8"):
        train(TrainConfig(model="resmlp_fmnist", out=str(tmp_path / "run"), epochs=1, batch_size=8, train_subset=4),
              log=lambda m: None)
    assert not (tmp_path / "run").exists()


def test_accuracy_benchmark_takes_data_and_model_sources(fmnist_png, tmp_path, capsys, one_thread):
    from qmlp_nncf.benchmark.accuracy import main as accuracy
    from qmlp_nncf.zoo import checkpoint_path

    out = tmp_path / "acc.json"
    assert accuracy(["--checkpoint", str(checkpoint_path("resmlp_fmnist")), "--data", str(fmnist_png), "--recipe",
                     "qmlp_w8a8", "--limit", "100", "--no-ir", "--calibration-size", "8", "--no-progress",
                     "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["config"]["data"]["spec"] == str(fmnist_png) and result["rows"][0]["n"] == 100
    assert f"val images of {fmnist_png}" in capsys.readouterr().out
