"""QAT on a tiny subset, and the end-to-end path on real images: zoo model -> qmlp quantize -> IR -> OpenVINO."""
import json

import pytest
import torch

from qmlp_nncf.checkpoint import load_model, quantized_payload, read_checkpoint, save_checkpoint
from qmlp_nncf.cli import main
from qmlp_nncf.data import calibration_subset
from qmlp_nncf.quantization import quantize
from qmlp_nncf.training import TrainConfig
from qmlp_nncf.training.qat import qat
from qmlp_nncf.zoo import checkpoint_path

pytestmark = pytest.mark.usefixtures("one_thread")


def test_qat_trains_the_quantized_model_and_keeps_its_quantizers(tmp_path, fmnist_train):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("qmlp_mixer_fmnist", num_blocks=1).eval()
    save_checkpoint(tmp_path / "float.pth", {"state_dict": model.state_dict(), "arch": "qmlp_mixer_fmnist",
                                             "model_kwargs": {"num_blocks": 1}})
    q = quantize(model, calibration_subset(fmnist_train, 16), "qmlp_w4a4", log=lambda m: None).model
    before = {k: v.clone() for k, v in q.state_dict().items()}
    provenance = {"recipe": "qmlp_w4a4", "float_top1": 0.5, "source": str(tmp_path / "float.pth")}
    save_checkpoint(tmp_path / "q.pth", {"state_dict": q.state_dict(), "arch": "qmlp_mixer_fmnist",
                                         "model_kwargs": {"num_blocks": 1}, **quantized_payload(q), **provenance})
    with pytest.raises(ValueError, match="already holds NNCF quantizers"):
        quantize(q, calibration_subset(fmnist_train, 16), "qmlp_w4a4", log=lambda m: None)
    cfg = TrainConfig(model="qmlp_mixer_fmnist", out=str(tmp_path / "qat"), epochs=1, amp="off", lr=1e-3,
                      batch_size=64, train_subset=256, test_subset=128, init_from=str(tmp_path / "q.pth"),
                      teacher=str(tmp_path / "float.pth"))
    qat(q, cfg, log=lambda m: None)
    restored, meta = load_model(tmp_path / "qat" / "model.pth")
    after = restored.state_dict()
    assert "nncf_config" in meta and set(after) == set(before)
    assert {k: meta[k] for k in provenance} == provenance  # the QAT checkpoint still names its recipe and float
    assert any(not torch.equal(before[k], after[k]) for k in before if "_scale_param_storage" in k or "input_" in k)
    bits = [int(v) for k, v in after.items() if k.endswith("_num_bits")]
    assert bits.count(4) == sum(int(v) == 4 for k, v in before.items() if k.endswith("_num_bits")) > 0
    with pytest.raises(ValueError, match="amp='off'"):
        qat(q, TrainConfig(model="m", out=str(tmp_path / "x")))


def test_quantize_export_and_run_in_openvino_on_real_images(tmp_path, capsys):
    rc = main(["quantize", "--model", "resmlp_fmnist", "--recipe", "qmlp_w8a8", "--out", str(tmp_path / "q"),
               "--calibration-size", "64", "--limit", "500", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 500 and result["ir"].endswith("model.xml")
    rc = main(["eval", "--ir", result["ir"], "--limit", "500", "--json"])
    assert rc == 0
    ir = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ir["n"] == 500
    assert abs(ir["top1"] - result["top1"]) <= 0.01  # torch fake-quant vs OpenVINO int8 on the same images
    assert result["top1"] >= read_checkpoint(checkpoint_path("resmlp_fmnist"))["top1"] - 0.05


def test_qat_inputs_options_given_then_config_then_defaults(tmp_path):
    """`qmlp qat`'s inputs, read before any model is built: the options given win over the config's training keys,
    which win over QATSettings' defaults; a float checkpoint is refused; a zoo teacher becomes its checkpoint."""
    from qmlp_nncf.training.qat import QATSettings, qat_inputs
    from qmlp_nncf.zoo import get_entry

    ckpt = tmp_path / "q.pth"
    torch.save({"arch": "mixer_fmnist", "nncf_config": {}, "model_source": "mixer_fmnist", "state_dict": {}}, ckpt)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"epochs": 7, "optimizer": {"base_lr": 1e-3},
                                  "compression": {"algorithm": "quantization"}}))
    got = qat_inputs(str(ckpt), config=str(config), epochs=None, lr=None, batch_size=16, seed=None, workers=None)
    assert got.options == {"epochs": 7, "lr": 1e-3, "batch_size": 16, "seed": 0, "workers": -1}
    assert got.teacher == str(get_entry("mixer_fmnist").checkpoint)
    assert qat_inputs(str(ckpt), epochs=3).options["epochs"] == 3
    assert qat_inputs(str(ckpt)).options["lr"] == QATSettings().lr
    float_ckpt = tmp_path / "f.pth"
    torch.save({"arch": "mixer_fmnist", "state_dict": {}}, float_ckpt)
    with pytest.raises(ValueError, match="is not quantized"):
        qat_inputs(str(float_ckpt))
