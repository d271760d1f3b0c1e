"""Fingerprints of `qmlp quantize` outputs, to show a refactoring changes none: per run, the SHA-256 of the IR's
model.bin, of its constants as the model uses them (unused 4-bit padding masked), and of quantized.pth's state
dict, and the run's JSON without its timings and paths. Run it on two commits and
compare:

    python benchmarks/same_outputs.py --json after.json          # in this checkout
    PYTHONPATH=/path/to/old python /path/to/old/benchmarks/same_outputs.py --json before.json   # or copy it there
    python benchmarks/same_outputs.py --compare before.json after.json

Six runs (16 calibration images, 300 test images, one thread): qmlp_w8a8, plain_w4a4_ec (fused placement + error
correction), nncf_default_w8a8, qmlp_w4a4_tuned (range tuning), auto:w4a8 (search and finish) and the OpenVINO
backend (--ir). About 10 minutes on 2 cores, most of it range tuning and the auto search.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = {
    "qmlp_w8a8": ["--model", "qmlp_mixer_fmnist", "--recipe", "qmlp_w8a8"],
    "plain_w4a4_ec": ["--model", "resmlp_fmnist", "--recipe", "plain_w4a4_ec"],
    "nncf_default": ["--model", "gmlp_fmnist", "--recipe", "nncf_default_w8a8"],
    "qmlp_w4a4_tuned": ["--model", "qmlp_resmlp_fmnist", "--recipe", "qmlp_w4a4_tuned"],
    "auto_w4a8": ["--model", "mixer_fmnist", "--recipe", "auto:w4a8", "--max-minutes", "6"],
}
TIMINGS = ("ptq_time_s", "seconds", "checkpoint", "ir", "ir_source")  # and the paths of this run


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _constants_digest(xml: Path) -> str:
    """The IR's constants, as the model computes with them: a 4-bit constant with an odd number of values leaves the
    high nibble of its last byte unused, and OpenVINO does not clear it (``model.bin`` then differs run to run)."""
    import numpy as np
    import openvino as ov

    h = hashlib.sha256()
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        data = np.array(op.get_data()).view(np.uint8).copy().reshape(-1)
        packed = op.get_element_type() in (ov.Type.i4, ov.Type.u4)
        if packed and int(np.prod(list(op.get_shape()), dtype=np.int64)) % 2 and data.size:
            data[-1] &= 0x0F
        h.update(str(op.get_element_type()).encode())
        h.update(data.tobytes())
    return h.hexdigest()[:16]


def _state_digest(path: Path) -> str:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _untimed(d):
    if isinstance(d, dict):
        return {k: _untimed(v) for k, v in d.items() if k not in TIMINGS}
    return d


def _qmlp(args: list[str], env: dict, cwd: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "qmlp_nncf", *args, "--json"], env=env, capture_output=True, text=True,
                       cwd=cwd)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def fingerprints(repo: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo), "NNCF_EXTENSION_LOAD_TIMEOUT": "0", "OMP_NUM_THREADS": "1"}
    out = {}
    with tempfile.TemporaryDirectory(prefix="qmlp-same-") as tmp:
        common = ["--calibration-size", "16", "--limit", "300", "--threads", "1"]
        for name, args in RUNS.items():
            run = _qmlp(["quantize", *args, *common, "--out", f"{tmp}/{name}"], env, tmp)
            if "error" not in run:
                run = {"bin": _digest(Path(tmp, name, "ir", "model.bin")),
                       "constants": _constants_digest(Path(tmp, name, "ir", "model.xml")),
                       "state": _state_digest(Path(tmp, name, "quantized.pth")), "json": _untimed(run)}
            out[name] = run
            print(f"{name}: {run.get('bin', run.get('error'))}", file=sys.stderr, flush=True)
        _qmlp(["export", "--model", "mixer_fmnist", "--out", f"{tmp}/float"], env, tmp)
        run = _qmlp(["quantize", "--ir", f"{tmp}/float/model.xml", "--recipe", "qmlp_w8a8", "--calibration-size", "16",
                     "--limit", "300", "--out", f"{tmp}/ov"], env, tmp)
        out["openvino_qmlp_w8a8"] = run if "error" in run else {"bin": _digest(Path(tmp, "ov", "ir", "model.bin")),
                                                                 "json": _untimed(run)}
    return out


def compare(before: dict, after: dict) -> str:
    lines = ["| run | model.bin | IR constants | state dict | JSON |", "|---|---|---|---|---|"]
    for name in before:
        a, b = _untimed(before[name]), _untimed(after.get(name, {}))
        cells = [("same" if a.get(k) == b.get(k) else f"{a.get(k)} -> {b.get(k)}") if k in a or k in b else "-"
                 for k in ("bin", "constants", "state")]
        diff = sorted(k for k in set(a.get("json", {})) | set(b.get("json", {}))
                      if a.get("json", {}).get(k) != b.get("json", {}).get(k))
        lines.append(f"| {name} | {' | '.join(cells)} | {'same' if not diff else 'differs: ' + ', '.join(diff)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the fingerprints here")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two fingerprint files")
    args = p.parse_args(argv)
    if args.compare:
        before, after = (json.loads(Path(f).read_text()) for f in args.compare)
        print(compare(before, after))
        return 0
    result = fingerprints(REPO)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: v.get("bin", v.get("error")) for k, v in result.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
