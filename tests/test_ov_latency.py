"""benchmarks/ov_latency.py: quick runs, JSON contract, precision census, devices, bad input."""
import json
import subprocess
import sys

import pytest
import timm
import torch

import qmlp_nncf.models  # noqa: F401
from qmlp_nncf.benchmark.ov_latency import BenchConfig, BenchmarkError, main, resolve_devices
from qmlp_nncf.export import export_ir
from qmlp_nncf.export.prepare import reinit_zero_head

from conftest import REPO

ROW_KEYS = {"model", "recipe", "device", "hint", "batch", "mode", "latency_median_ms", "latency_p90_ms",
            "latency_min_ms", "latency_max_ms", "fps", "int8_share", "speedup_vs_fp32", "census"}


@pytest.fixture(scope="module")
def float_ir(tmp_path_factory):
    model = timm.create_model("resmlp_fmnist", num_blocks=1).eval()
    reinit_zero_head(model)
    out = tmp_path_factory.mktemp("ir") / "resmlp"
    return export_ir(model, out, (1, 1, 28, 28), metadata={"model": "resmlp_1block", "recipe": "fp32"}).xml


def test_quick_json(float_ir, tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    assert main(["--ir", str(float_ir), "--device", "CPU", "--hint", "f32", "--batch", "4", "--quick",
                 "--json", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "| resmlp_1block | fp32 | CPU | f32 |" in table
    result = json.loads(out.read_text())
    assert {"cpu", "flags", "openvino", "usable_cpus"} <= result["machine"].keys()
    assert {r["mode"]: r["batch"] for r in result["rows"]} == {"latency": 1, "throughput": 4}
    for row in result["rows"]:
        assert ROW_KEYS <= row.keys()
        assert row["census"]["FullyConnected"] == {"f32": row["gemm_ops"]} and row["int8_share"] == 0.0
        assert row["speedup_vs_fp32"] == 1.0 and row["fps"] > 0 and row["latency_median_ms"] > 0


def test_int8_ir_speedup_rows(float_ir, tmp_path, capsys):
    """An int8 IR next to its float IR: census says i8, speedup is filled in against the f32 float IR."""
    import nncf

    model = timm.create_model("resmlp_fmnist", num_blocks=1).eval()
    reinit_zero_head(model)
    q = nncf.quantize(model, nncf.Dataset([torch.randn(1, 1, 28, 28) for _ in range(4)]), subset_size=4)
    int8 = export_ir(q, tmp_path / "int8", (1, 1, 28, 28), metadata={"model": "resmlp_1block", "recipe": "w8a8"})
    out = tmp_path / "b.json"
    assert main(["--ir", str(float_ir), "--ir", str(int8.xml.parent), "--device", "CPU", "--hint", "bf16",
                 "--batch", "2", "--quick", "--json", str(out), "--no-progress"]) == 0
    from qmlp_nncf.hardware import cpu_capabilities

    rows = json.loads(out.read_text())["rows"]
    # the f32 float baseline is always measured; bf16 only where the CPU has it (else a note)
    expected = {("fp32", "f32"), ("fp32", "bf16"), ("w8a8", "bf16")} if cpu_capabilities().bf16 else {("fp32", "f32")}
    assert {(r["recipe"], r["hint"]) for r in rows} == expected
    for r in rows:
        if r["recipe"] == "w8a8":
            assert r["int8_share"] > 0.9 and r["speedup_vs_fp32"] > 0


def test_model_on_the_fly(capsys):
    """--model builds the float IR itself (random weights until the zoo checkpoint exists)."""
    assert main(["--model", "gmlp_fmnist", "--device", "CPU", "--hint", "f32", "--batch", "2", "--quick",
                 "--no-progress"]) == 0
    assert "| gmlp_fmnist | fp32 | CPU | f32 |" in capsys.readouterr().out


def test_absent_device_fails_with_the_fix():
    """A device asked for by name that is absent is an error, never a run on another device."""
    with pytest.raises(BenchmarkError, match=r"device GPU is not present: OpenVINO sees CPU\. An Intel GPU needs"):
        resolve_devices(["GPU", "CPU"], ["CPU"])
    with pytest.raises(BenchmarkError, match="device NPU is not present") as e:
        resolve_devices(["NPU"], ["CPU"])
    assert "GPU" not in str(e.value)
    assert resolve_devices([], ["CPU"]) == (["CPU", "AUTO"], [])
    assert resolve_devices([], ["CPU", "GPU.0"])[0] == ["CPU", "GPU", "AUTO"]
    assert resolve_devices(["GPU"], ["CPU", "GPU.0"])[0] == ["GPU"]


@pytest.mark.parametrize("device", ["GPU", "NPU"])
def test_absent_device_cli(float_ir, capsys, device):
    assert main(["--ir", str(float_ir), "--device", device, "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"device {device} is not present" in err and "Traceback" not in err
    assert ("--device CPU" in err) == (device == "GPU")


def test_int8_capability_is_read_from_the_device():
    import openvino as ov

    from qmlp_nncf.benchmark.ov_latency import int8_supported

    core = ov.Core()
    assert int8_supported(core, "CPU") == ("INT8" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    assert int8_supported(core, "GPU") is False  # absent here: no capability to read


@pytest.mark.parametrize("args, message", [
    (["--ir", "/no/such/model.xml"], "no OpenVINO IR at /no/such/model.xml"),
    ([], "nothing to benchmark"),
    (["--model", "no_such_model"], "unknown model 'no_such_model'"),
    (["--model", "gmlp_fmnist", "--recipe", "no_such_recipe"], "no_such_recipe"),
    (["--ir", "x.xml", "--recipe", "fp32"], "--recipe applies to --model"),
    (["--model", "gmlp_fmnist", "--vs", "qmlp_w8a8"], "--vs qmlp_w8a8: no --recipe or --ir of that recipe"),
    (["--model", "gmlp_fmnist", "--repeats", "0"], "--repeats must be >= 1"),
    (["--model", "gmlp_fmnist", "--w4-kernels", "fp4"], "unknown --w4-kernels"),
    # a 224-px RGB model with the default (gray 28-px) data: the fix is other data, not --convert-channels
    (["--model", "resmlp_12_224", "--recipe", "qmlp_w8a8", "--model-kwargs", "num_classes=10"],
     "pass --data <ImageFolder root> (its train split calibrates), or --random-calibration for a speed-only run"),
])
def test_bad_input(args, message, capsys):
    assert main([*args, "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_config_validation():
    with pytest.raises(BenchmarkError, match="--batch"):
        BenchConfig(batch=0)
    assert BenchConfig(quick=True).duration_s == 0.5


def test_script_help():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ov_latency.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--ir", "--model", "--recipe", "--device", "--batch", "--hint", "--quick", "--json"):
        assert flag in out


def test_compile_failure_is_a_note_not_a_crash(float_ir, monkeypatch):
    """A measurement the device refuses to compile is recorded in failures/notes; the others still run."""
    from qmlp_nncf.benchmark import ov_latency
    from qmlp_nncf.benchmark.ov_latency import session

    real = session.compile_ir

    def refuse_bf16(core, src, device, hint, mode, batch):
        if hint == "bf16":
            raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\n"
                               "[TransposeTransformation] END: node: Transpose blocks.0\n"
                               "Argument shapes are inconsistent.")
        return real(core, src, device, hint, mode, batch)

    monkeypatch.setattr(session, "compile_ir", refuse_bf16)
    monkeypatch.setattr(session, "hint_supported", lambda core, device, hint: True)  # bf16 even on AVX2 CPUs
    cfg = BenchConfig(devices=["CPU"], hints=["bf16"], batch=2, quick=True)
    result = ov_latency.run([ov_latency.ir_source(float_ir)], cfg, progress=False, log=lambda m: None)
    assert {(r["hint"], r["mode"]) for r in result["rows"]} == {("f32", "latency"), ("f32", "throughput")}
    assert [(f["hint"], f["mode"]) for f in result["failures"]] == [("bf16", "latency"), ("bf16", "throughput")]
    assert result["failures"][0]["error"] == ("[TransposeTransformation] END: node: Transpose blocks.0 ... "
                                              "Argument shapes are inconsistent.")
    assert any("failed to compile" in n and "TransposeTransformation" in n for n in result["notes"])
    assert "| resmlp_1block | fp32 | CPU | f32 |" in ov_latency.markdown(result)


def test_cross_check_runs_benchmark_app_on_the_same_ir(float_ir, tmp_path, capsys):
    """--cross-check: OpenVINO's benchmark_app measures the same IR, hints and batch; both numbers and the ratio."""
    out = tmp_path / "x.json"
    assert main(["--ir", str(float_ir), "--device", "CPU", "--hint", "f32", "--batch", "2", "--quick",
                 "--cross-check", "--json", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "Cross-check with OpenVINO's benchmark_app" in table
    rows = json.loads(out.read_text())["rows"]
    assert {r["mode"] for r in rows} == {"latency", "throughput"}
    for r in rows:
        b = r["benchmark_app"]
        assert b["fps"] > 0 and b["latency_median_ms"] > 0
        assert b["fps_ratio"] == pytest.approx(r["fps"] / b["fps"], rel=1e-2)
        assert "-infer_precision f32" in b["command"] and f"-shape [{r['batch']},1,28,28]" in b["command"]
        assert f"-hint {r['mode']}" in b["command"]
