"""Reference numbers: ``benchmarks/reference_accuracy.json``, its ``entries`` (one per model, recipe, mode,
test images and seeds) and its ``targets`` (``targets.py``)."""
from __future__ import annotations

import json
from pathlib import Path

from ...console import write_json
from .models import AccuracyError

REFERENCE = Path(__file__).resolve().parents[3] / "benchmarks" / "reference_accuracy.json"
_KEYS = {"model", "recipe", "n", "torch_top1", "ir_top1", "tolerance"}


def _vnni() -> bool:
    from ...hardware import cpu_capabilities

    return bool(cpu_capabilities().vnni)


def entry_key(e: dict) -> tuple:
    """(model, recipe, mode, n, seeds): a measurement matches an entry only with the same five."""
    return e["model"], e["recipe"], e.get("mode", "ptq"), e["n"], e.get("seeds", 1)


def load_reference(path: str | Path = REFERENCE) -> list[dict]:
    """The ``entries`` of a reference file: ``{model, recipe, n, torch_top1, ir_top1, tolerance[, mode, seeds,
    torch_top1_sd, ir_top1_sd]}``."""
    path = Path(path)
    if not path.is_file():
        raise AccuracyError(f"reference file {path} does not exist")
    try:
        entries = json.loads(path.read_text())["entries"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise AccuracyError(f"{path}: expected a JSON object with an 'entries' list ({e})") from None
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not _KEYS <= e.keys():
            raise AccuracyError(f"{path}: entries[{i}] needs the keys {sorted(_KEYS)}")
    return entries


def compare_reference(rows: list[dict], reference: list[dict]) -> list[dict]:
    """One check per reference entry that has a measured row with the same model, recipe, mode, n and seeds
    (``rows``: summary rows, or single-seed rows).

    A check is ``{model, recipe, mode, n, seeds, metric, measured, reference, tolerance, ok}``; the IR metric
    is only checked when the row has one, and when the entry was measured on a CPU of the same int8 kind
    (``cpu_vnni``; entries without it were measured with VNNI).
    """
    by = {entry_key(r): r for r in rows}
    checks = []
    vnni = _vnni()
    for e in reference:
        row = by.get(entry_key(e))
        if row is None:
            continue
        for metric in ("torch_top1", "ir_top1"):
            if row.get(metric) is None or e.get(metric) is None:
                continue
            if metric == "ir_top1" and e.get("cpu_vnni", True) != vnni:
                continue  # OpenVINO's int8 kernels differ with and without VNNI: IR numbers of the other kind
            checks.append({"model": e["model"], "recipe": e["recipe"], "mode": e.get("mode", "ptq"), "n": e["n"],
                           "seeds": e.get("seeds", 1), "metric": metric, "measured": row[metric],
                           "reference": e[metric], "tolerance": e["tolerance"],
                           "ok": abs(row[metric] - e[metric]) <= e["tolerance"] + 1e-9})
    return checks


def update_reference(path: str | Path, rows: list[dict], tolerance: float, command: str) -> None:
    """Merge the measured rows (summary rows: means and sd over seeds) into the reference file; entries
    with the same key are replaced, the targets are kept; atomic write. An entry's ``command`` is its row's
    own (the run that measured it, kept through ``--report`` merges), else ``command``."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {
        "description": "Reference top-1 (fractions) of benchmarks/accuracy.py: n = test images (the first n), "
                       "seeds = calibration (and QAT) draws averaged. tests/test_accuracy_reference.py checks "
                       "the n=1000 entries.", "entries": []}
    new = {}
    for r in rows:
        e = {"model": r["model"], "recipe": r["recipe"], "mode": r.get("mode", "ptq"), "n": r["n"],
             "seeds": r.get("seeds", 1), "torch_top1": r["torch_top1"], "ir_top1": r.get("ir_top1")}
        if e["seeds"] > 1:
            e.update(torch_top1_sd=r.get("torch_top1_sd"), ir_top1_sd=r.get("ir_top1_sd"))
        new[entry_key(e)] = e | {"cpu_vnni": _vnni(), "tolerance": tolerance, "command": r.get("command") or command}
    kept = [e for e in data["entries"] if entry_key(e) not in new]
    data["entries"] = sorted(kept + list(new.values()),
                             key=lambda e: (-e["n"], e["model"], e["recipe"], e.get("mode", "ptq"), e.get("seeds", 1)))
    write_json(path, data)
