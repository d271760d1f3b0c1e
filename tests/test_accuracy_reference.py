"""The accuracy benchmark reproduces its stored reference numbers on a small subset.

One zoo model x (qmlp_w8a8, the stock nncf_default_w8a8 baseline) on the first 1000 Fashion-MNIST
test images, torch fake-quant and OpenVINO IR top-1, against ``benchmarks/reference_accuracy.json``.
Refresh the entries with the command in ``FILL``.
"""
import pytest
import torch

from qmlp_nncf.benchmark.accuracy import AccuracyConfig, compare_reference, load_reference, run
from qmlp_nncf.zoo import get_entry

MODEL = "resmlp_fmnist"
RECIPES = ("qmlp_w8a8", "nncf_default_w8a8")
SUBSET = 1000
FILL = (f"python benchmarks/accuracy.py --model {MODEL} --recipe {' --recipe '.join(RECIPES)} --limit {SUBSET} "
        f"--threads 1 --update-reference --tolerance 0.005")


def test_reference_subset():
    torch.set_num_threads(1)
    try:
        checkpoint = get_entry(MODEL).checkpoint
    except KeyError:
        pytest.skip(f"zoo model {MODEL} is not in zoo.json yet (train it: `qmlp train --model {MODEL} ... --zoo`)")
    if not checkpoint.is_file():
        pytest.skip(f"zoo checkpoint {checkpoint} is absent (train it: `qmlp train --model {MODEL} ... --zoo`)")
    reference = [e for e in load_reference() if e["model"] == MODEL and e["n"] == SUBSET and e["recipe"] in RECIPES]
    assert sorted(e["recipe"] for e in reference) == sorted(RECIPES), f"reference entries missing; run: {FILL}"

    result = run(AccuracyConfig(models=[MODEL], recipes=list(RECIPES), limit=SUBSET, progress=False),
                 log=lambda msg: None)
    from qmlp_nncf.hardware import cpu_capabilities

    checks = compare_reference(result["summary"], reference)
    same_kind = [e for e in reference if e.get("cpu_vnni", True) == cpu_capabilities().vnni]
    # torch top-1 of each recipe, and IR top-1 where the entry was measured with the same int8 kernels (VNNI or not)
    assert len(checks) == len(RECIPES) + len(same_kind)
    bad = [f"{c['recipe']} {c['metric']}: {c['measured']:.4f} vs {c['reference']:.4f} (tolerance {c['tolerance']})"
           for c in checks if not c["ok"]]
    assert not bad, "; ".join(bad)
    for row in result["rows"]:  # IR and torch fake-quant agree image by image
        assert row["agreement"] >= (0.98 if cpu_capabilities().vnni else 0.95)
