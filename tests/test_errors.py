"""Every benchmark script and every ``qmlp`` sub-command turns a wrong data source, a missing file and an unknown
name (model / recipe) into one line on stderr and exit code 2, before any model is built (issue 29).

The whole matrix runs in ONE Python process (``tests/error_driver.py``): each case executes the entry script as
``python`` would (``runpy``, ``__name__ == "__main__"``), with fd 2 captured and the warning registries reset, so a
traceback or a second line shows exactly as a user would see it. A few cases also run as separate processes, the
way a user starts them, to cover what only a fresh interpreter prints (import-time warnings)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

NOWHERE = "/nonexistent/qmlp"
ZOO_CKPT = str(REPO / "qmlp_nncf" / "zoo" / "checkpoints" / "qmlp_mixer_fmnist.pth")  # any existing file
QMLP = "-m qmlp_nncf"


def bench(name: str) -> str:
    return str(REPO / "benchmarks" / f"{name}.py")


# (entry, args, words the one line must hold[, words it must not]): a wrong data source (a), a missing file (b), an
# unknown name (c)
CASES = {
    # qmlp sub-commands; `qmlp zoo` takes no data, file or name
    "train/data": (QMLP, ["train", "--model", "mixer_fmnist", "--out", "{tmp}/t", "--data", NOWHERE], ["--data"]),
    "train/file": (QMLP, ["train", "--model", "mixer_fmnist", "--out", "{tmp}/t", "--init-from", NOWHERE + ".pth"],
                   ["does not exist"]),
    "train/no-images": (QMLP, ["train", "--model", "mixer_fmnist", "--out", "{tmp}/t", "--data", "{tmp}/no_images"],
                        ["hold no images"]),
    "train/model": (QMLP, ["train", "--model", "no_such_model", "--out", "{tmp}/t"], ["unknown model"]),
    "eval/data": (QMLP, ["eval", "--model", "mixer_fmnist", "--data", NOWHERE], ["--data"]),
    "eval/file": (QMLP, ["eval", "--checkpoint", NOWHERE + ".pth"], ["does not exist"]),
    "eval/ir": (QMLP, ["eval", "--ir", NOWHERE + ".xml"], [NOWHERE]),
    "eval/model": (QMLP, ["eval", "--model", "no_such_model"], ["unknown model"]),
    "eval/recipe": (QMLP, ["eval", "--model", "mixer_fmnist", "--recipe", "no_such_recipe"], ["unknown recipe"]),
    "convert/data": (QMLP, ["convert", "--model", "mixer_fmnist", "--out", "{tmp}/c.pth", "--data", NOWHERE],
                     ["--data"]),
    "convert/file": (QMLP, ["convert", "--checkpoint", NOWHERE + ".pth", "--out", "{tmp}/c.pth"], ["does not exist"]),
    "finetune/data": (QMLP, ["finetune", "--converted", ZOO_CKPT, "--out", "{tmp}/f", "--data", NOWHERE], ["--data"]),
    "finetune/file": (QMLP, ["finetune", "--converted", NOWHERE + ".pth", "--out", "{tmp}/f"], ["does not exist"]),
    "quantize/data": (QMLP, ["quantize", "--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--out", "{tmp}/q",
                             "--data", NOWHERE], ["--data"]),
    "quantize/file": (QMLP, ["quantize", "--checkpoint", NOWHERE + ".pth", "--recipe", "qmlp_w8a8",
                             "--out", "{tmp}/q"], ["does not exist"]),
    "quantize/config": (QMLP, ["quantize", "--config", NOWHERE + ".json", "--out", "{tmp}/q"], [NOWHERE]),
    "quantize/no-images": (QMLP, ["quantize", "--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--out", "{tmp}/q",
                                  "--data", "{tmp}/no_images"], ["hold no images"]),
    "quantize/model": (QMLP, ["quantize", "--model", "no_such_model", "--recipe", "qmlp_w8a8", "--out", "{tmp}/q"],
                       ["unknown model"]),
    "quantize/recipe": (QMLP, ["quantize", "--model", "mixer_fmnist", "--recipe", "no_such_recipe",
                               "--out", "{tmp}/q"], ["unknown recipe", "qmlp_w8a8"]),
    "quantize/max-minutes": (QMLP, ["quantize", "--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--out", "{tmp}/q",
                                    "--max-minutes", "5"], ["--max-minutes", "qmlp_w8a8 is not one"]),
    # a truncated or corrupt file (issue 35): the one line names the file, for IRs from one reader (ir_file.read_ir)
    "eval/ir-bin": (QMLP, ["eval", "--ir", "{tmp}/cut_bin/model.xml"], ["cut_bin/model.xml", "truncated or corrupt"]),
    "eval/ir-xml": (QMLP, ["eval", "--ir", "{tmp}/cut_xml/model.xml"], ["cut_xml/model.xml", "truncated or corrupt"]),
    "quantize/ir-bin": (QMLP, ["quantize", "--ir", "{tmp}/cut_bin", "--recipe", "qmlp_w8a8", "--out", "{tmp}/q"],
                        ["cut_bin/model.xml", "truncated or corrupt"]),
    "ov_latency/ir-xml": (bench("ov_latency"), ["--ir", "{tmp}/cut_xml/model.xml", "--quick"],
                          ["cut_xml/model.xml", "truncated or corrupt"]),
    "ov_profile/ir-bin": (bench("ov_profile"), ["--ir", "{tmp}/cut_bin/model.xml"],
                          ["cut_bin/model.xml", "truncated or corrupt"]),
    "eval/checkpoint-cut": (QMLP, ["eval", "--checkpoint", "{tmp}/cut.pth"], ["cut.pth", "cannot read checkpoint"]),
    "quantize/checkpoint-cut": (QMLP, ["quantize", "--checkpoint", "{tmp}/cut.pth", "--recipe", "qmlp_w8a8",
                                       "--out", "{tmp}/q"], ["cut.pth", "cannot read checkpoint"]),
    "quantize/max-minutes-0": (QMLP, ["quantize", "--model", "mixer_fmnist", "--recipe", "auto:w4a4", "--out",
                                      "{tmp}/q", "--max-minutes", "0"], ["auto:w4a4 needs a time budget > 0 (--max-minutes", "got 0"]),
    "analyze/data": (QMLP, ["analyze", "--model", "mixer_fmnist", "--out", "{tmp}/a", "--data", NOWHERE], ["--data"]),
    "analyze/file": (QMLP, ["analyze", "--checkpoint", NOWHERE + ".pth", "--out", "{tmp}/a"], ["does not exist"]),
    "qat/data": (QMLP, ["qat", "--checkpoint", "{quantized}", "--out", "{tmp}/qat", "--data", NOWHERE], ["--data"]),
    "qat/file": (QMLP, ["qat", "--checkpoint", NOWHERE + ".pth", "--out", "{tmp}/qat"], ["does not exist"]),
    "export/data": (QMLP, ["export", "--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--out", "{tmp}/x",
                           "--data", NOWHERE], ["--data"]),
    "export/file": (QMLP, ["export", "--checkpoint", NOWHERE + ".pth", "--out", "{tmp}/x"], ["does not exist"]),
    "export/model": (QMLP, ["export", "--model", "no_such_model", "--out", "{tmp}/x"], ["unknown model"]),
    "export/recipe": (QMLP, ["export", "--model", "mixer_fmnist", "--recipe", "no_such_recipe", "--out", "{tmp}/x"],
                      ["unknown recipe"]),
    # benchmark scripts; activation_ranges takes no data, file or name
    "accuracy/data": (bench("accuracy"), ["--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--data", NOWHERE],
                      ["--data"]),
    "accuracy/file": (bench("accuracy"), ["--checkpoint", NOWHERE + ".pth", "--recipe", "qmlp_w8a8"],
                      ["does not exist"]),
    "accuracy/report": (bench("accuracy"), ["--report", NOWHERE + ".json"], [NOWHERE]),
    "accuracy/model": (bench("accuracy"), ["--model", "no_such_model", "--recipe", "qmlp_w8a8"], ["no_such_model"]),
    "accuracy/recipe": (bench("accuracy"), ["--model", "mixer_fmnist", "--recipe", "no_such_recipe"],
                        ["no_such_recipe"]),
    "depth/file": (bench("depth"), ["--model", "mixer_fmnist", "--accuracy", NOWHERE + ".json"], [NOWHERE]),
    "depth/model": (bench("depth"), ["--model", "no_such_model"], ["no_such_model"]),
    "ov_latency/data": (bench("ov_latency"), ["--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--data", NOWHERE,
                                              "--quick"], ["--data"]),
    "ov_latency/file": (bench("ov_latency"), ["--ir", NOWHERE + ".xml", "--quick"], [NOWHERE]),
    "ov_latency/no-images": (bench("ov_latency"), ["--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--data",
                                                   "{tmp}/no_images", "--quick"], ["hold no images"]),
    "ov_latency/model": (bench("ov_latency"), ["--model", "no_such_model", "--quick"], ["unknown model"],
                         ["calibration data"]),  # the model's fault, not the default data's
    "ov_latency/recipe": (bench("ov_latency"), ["--model", "mixer_fmnist", "--recipe", "no_such_recipe", "--quick"],
                          ["unknown recipe"]),
    "ov_path/model": (bench("ov_path"), ["--model", "no_such_model"], ["no_such_model"]),
    "ov_path/recipe": (bench("ov_path"), ["--model", "mixer_fmnist", "--recipe", "no_such_recipe"],
                       ["no_such_recipe"]),
    "ov_profile/file": (bench("ov_profile"), ["--ir", NOWHERE + ".xml"], [NOWHERE]),
    "ptq_time/data": (bench("ptq_time"), ["--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--data", NOWHERE],
                      ["--data"]),
    "ptq_time/model": (bench("ptq_time"), ["--model", "no_such_model", "--recipe", "qmlp_w8a8"], ["no_such_model"]),
    "ptq_time/recipe": (bench("ptq_time"), ["--model", "mixer_fmnist", "--recipe", "no_such_recipe"],
                        ["no_such_recipe"]),
}

DRIVER = r'''
import io, json, os, runpy, sys, tempfile, time, traceback, warnings
cases = json.loads(sys.argv[1])
filters = list(warnings.filters)
results = {}
for name, (entry, args) in cases.items():
    warnings.resetwarnings()  # a fresh process: every warning shows once again
    warnings.filters[:] = filters
    with tempfile.TemporaryFile("w+") as err:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), write_through=True)
        code, start = 0, time.perf_counter()
        try:
            if entry == "-m qmlp_nncf":
                sys.argv = ["qmlp", *args]
                runpy.run_module("qmlp_nncf", run_name="__main__", alter_sys=True)
            else:
                sys.argv = [entry, *args]
                runpy.run_path(entry, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.close()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr = sys.__stderr__
        err.seek(0)
        results[name] = {"code": code, "stderr": err.read(), "seconds": round(time.perf_counter() - start, 2)}
print("RESULTS " + json.dumps(results))
'''


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "NNCF_EXTENSION_LOAD_TIMEOUT": "0"}


def lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A file that reads as a `qmlp quantize` checkpoint (only its keys are read before the data is checked)."""
    import torch

    path = tmp_path_factory.mktemp("qat") / "quantized.pth"
    torch.save({"arch": "mixer_fmnist", "nncf_config": {}, "state_dict": {}}, path)
    return str(path)


def _truncated_files(tmp):
    """cut_bin/ and cut_xml/: a float IR with half its .bin or half its .xml; cut.pth: half a zoo checkpoint."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 1, 28, 28], np.float32)
    w = ops.constant(np.ones((28 * 28, 10), np.float32))
    ov.save_model(ov.Model([ops.matmul(ops.reshape(x, [1, -1], False), w, False, False)], [x]), str(tmp / "ir.xml"))
    xml, bin_ = (tmp / "ir.xml").read_bytes(), (tmp / "ir.bin").read_bytes()
    for name, (x_bytes, b_bytes) in {"cut_bin": (xml, bin_[: len(bin_) // 2]),
                                     "cut_xml": (xml[: len(xml) // 2], bin_)}.items():
        (tmp / name).mkdir()
        (tmp / name / "model.xml").write_bytes(x_bytes)
        (tmp / name / "model.bin").write_bytes(b_bytes)
    ckpt = open(ZOO_CKPT, "rb").read()
    (tmp / "cut.pth").write_bytes(ckpt[: len(ckpt) // 2])


@pytest.fixture(scope="module")
def results(tmp_path_factory, quantized):
    tmp = tmp_path_factory.mktemp("errors")
    for split in ("train", "val"):  # an ImageFolder root whose class folders hold no image
        (tmp / "no_images" / split / "cls").mkdir(parents=True)
    _truncated_files(tmp)
    cases = {name: (entry, [a.format(tmp=tmp, quantized=quantized) for a in args])
             for name, (entry, args, *_) in CASES.items()}
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True,
                          env=env(), cwd=tmp, timeout=600)
    out = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and out, proc.stderr[-3000:]
    return json.loads(out[-1][len("RESULTS "):])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, results):
    r = results[case]
    shown = lines(r["stderr"])
    assert "Traceback" not in r["stderr"], r["stderr"]
    assert r["code"] == 2 and len(shown) == 1, r
    _, _, words, *absent = CASES[case]
    assert ": error: " in shown[0] and all(word in shown[0] for word in words), shown[0]
    assert not any(word in shown[0] for word in (absent or [[]])[0]), shown[0]
    assert r["seconds"] < 20, f"{case}: {r['seconds']} s (inputs are checked before any model is built)"


@pytest.mark.parametrize("argv", [
    [QMLP, "quantize", "--model", "mixer_fmnist", "--recipe", "no_such_recipe", "--out", "/tmp/qmlp_never_written"],
    [bench("ov_latency"), "--model", "mixer_fmnist", "--recipe", "qmlp_w8a8", "--data", NOWHERE, "--quick"],
])
def test_a_fresh_process_prints_one_line(argv, tmp_path):
    """As a user starts them: nothing else on stderr, import-time warnings included."""
    cmd = [sys.executable, *argv[0].split(), *argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and len(lines(proc.stderr)) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_help_is_plain_text_whole_sentences():
    """`qmlp --help` and every sub-command's help: no reST markup, and the description is whole sentences."""
    import argparse

    from qmlp_nncf.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for p in (parser, *sub.choices.values()):
        assert "``" not in p.format_help(), p.prog
    assert parser.description.endswith(".") and parser.description.startswith("Q-MLP quantization")
