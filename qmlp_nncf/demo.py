"""``make demo``: what Q-MLP buys, in about ten minutes on any 2-core CPU.

1. the zoo (train a base model whose checkpoint is missing);
2. "what it buys", per family (the 6-block Fashion-MNIST models): float vs stock NNCF vs Q-MLP at 8 and 4 bit,
   top-1 and OpenVINO IR size. Top-1 comes from the reference numbers (``benchmarks/reference_accuracy.json``:
   full test set, mean of 3 calibration seeds, measured with ``benchmarks/accuracy.py``) where they exist; the
   IR sizes are of IRs exported here;
3. one real end-to-end run per family, on this machine and on Fashion-MNIST: quantize (64 calibration
   images) -> export -> OpenVINO top-1 on the test set, next to the reference (Q-MLP int8); every variant the
   reference lacks is measured so too;
4. speed where int8 matters (a 224-px model, random weights): the Q-MLP int8 IR against the float IR (f32 hint,
   and bf16 where the CPU has it) and against stock NNCF's int8 IR, measured side by side in alternating repeats
   (``ov_latency`` engine);
5. ``demo/report.html``: those tables, accuracy vs IR size, the range-by-depth figure of a base vs Q-MLP pair,
   and the time each step took. Tables: ``demo_report``.

``python -m qmlp_nncf.demo --quick`` runs every step on one family, a few images and short measurements (tests).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from . import demo_report as R
from .console import setup_process
from .progress import log_line
from .zoo import ZooEntry, checkpoint_path, list_entries

FAMILIES = ("mixer", "resmlp", "gmlp")
BASE_MODELS = tuple(f"{f}_fmnist" for f in FAMILIES)
STOCK_INT8 = "nncf_default_w8a8"  # what a user gets from nncf.quantize alone: the speed to beat
NO_SURGERY = "plain_w4a8_ec"  # the 4-bit path for a model that cannot be converted (OpenVINO CPUs)


@dataclass(frozen=True)
class DemoConfig:
    families: tuple = FAMILIES
    test_images: int = 0  # 0: the full test set
    # of the real runs (the reference's: 300; NNCF's statistics take ~0.5 s of CPU per image on these models)
    calibration_size: int = 64
    size_calibration: int = 8  # IRs exported for their size only (their top-1 is the reference's)
    real: tuple = ("Q-MLP int8",)  # run end to end here (seconds; qmlp_w4a4's MSE ranges take minutes); so is every
    # variant the reference lacks
    speed_model: str = "resmlp_24_224"  # 224 px, where int8 matters; random weights; with its qmlp_ conversion
    speed_calibration: int = 8  # random images: speed only
    speed_batch: int = 4  # throughput mode (latency mode: batch 1)
    speed_duration_s: float = 1.0  # per measurement and repeat
    speed_repeats: int = 3  # alternating: the ratios' spread
    range_images: int = 32
    out: str = "demo"


QUICK = DemoConfig(families=("resmlp",), test_images=200, calibration_size=16, size_calibration=4,
                   speed_model="resmlp_fmnist", speed_calibration=4, speed_batch=4, speed_duration_s=0.2,
                   speed_repeats=2, range_images=16)


class Steps:
    """Named steps with their wall time, logged as each ends."""

    def __init__(self, total: int):
        self.total, self.times = total, []

    @contextmanager
    def step(self, name: str):
        log_line(f"[{len(self.times) + 1}/{self.total}] {name} ...")
        t0 = time.perf_counter()
        yield
        self.times.append((name, time.perf_counter() - t0))
        log_line(f"[{len(self.times)}/{self.total}] {name}: done in {self.times[-1][1]:.0f} s")


def ensure_zoo() -> list[ZooEntry]:
    """Every base model has a checkpoint: train the missing ones with the zoo's default recipe."""
    from .training import TrainConfig, train
    from .training.release import release

    known = {e.name: e for e in list_entries()}
    for name in BASE_MODELS:
        if name in known and checkpoint_path(name).exists():
            continue
        log_line(f"{name}: no checkpoint in the zoo, training it (15 epochs, ~30-60 min on 2 cores)")
        out = f"runs/{name}"
        result = train(TrainConfig(model=name, out=out, epochs=15, ema_decay=0.999), resume=True, log=log_line)
        release(name, f"{out}/model.pth", result,
                command=f"qmlp train --model {name} --out {out} --epochs 15 --ema 0.999 --zoo")
    return list_entries()


def real_run(model: str, recipe: str, cfg: DemoConfig, work: Path) -> dict:
    """Quantize ``model`` with ``recipe`` on Fashion-MNIST train images, export the IR, and measure its top-1 in
    OpenVINO on the test set: the pipeline of ``qmlp quantize`` + ``qmlp eval --ir``."""
    from .export import export_ir
    from .export.evaluate import ir_top1
    from .quantization import quantize
    from .quantization.recipes.choice import RecipeChoice
    from .sources import DataSource, ModelSource, calibration_for, subset

    data = DataSource()
    loaded = ModelSource(model).load()
    t0 = time.perf_counter()
    choice = RecipeChoice.resolve(recipe)
    q = quantize(loaded.model, calibration_for(loaded, data, choice, cfg.calibration_size), choice.recipe,
                 subset_size=cfg.calibration_size or None, log=log_line)
    t1 = time.perf_counter()
    ir = export_ir(q.model, work / f"{model}.{recipe}", (1, *data.input_size(loaded.model)), force=True)
    t2 = time.perf_counter()
    m = ir_top1(ir.xml, subset(data.dataset("val", loaded.model), cfg.test_images))
    log_line(f"  {model} / {recipe}: OpenVINO top-1 {m['top1']:.4f} on {m['n']} test images")
    return {"model": model, "recipe": recipe, "calibration_items": q.calibration_items, "ptq_s": t1 - t0,
            "export_s": t2 - t1, "eval_s": time.perf_counter() - t2, "ir_top1": m["top1"], "n": m["n"],
            "ir_mb": ir.bin.stat().st_size / 2**20}


def ir_size(model: str, recipe: str, cfg: DemoConfig, work: Path) -> float:
    """MB of the IR of ``model`` quantized with ``recipe`` (calibrated on a few images: the size does not depend
    on them)."""
    from .export.exporter import export_model
    from .sources import ModelSource

    calibration = {} if recipe == "fp32" else {"recipe": recipe, "calibration_size": cfg.size_calibration}
    result = export_model(ModelSource(model), str(work / f"{model}.{recipe}.size"), force=True, **calibration)
    return result.bin.stat().st_size / 2**20


def what_it_buys(entries: list[ZooEntry], cfg: DemoConfig, work: Path) -> tuple[list[dict], list[dict]]:
    """The rows of the "what it buys" table (reference top-1, IR size exported here; the ``cfg.real`` variants
    measured here instead) and the real runs."""
    known = {e.name: e for e in entries}
    reference = R.reference_top1()
    rows, runs = [], []
    for family in cfg.families:
        for variant, model, recipe in R.variants(family):
            if model not in known:  # a Q-MLP model not fine-tuned into this zoo
                continue
            row = {"family": family, "variant": variant, "model": model, "recipe": recipe}
            ref = reference.get((model, recipe))
            if variant in cfg.real or (ref is None and recipe != "fp32"):
                run = real_run(model, recipe, cfg, work)
                runs.append({**run, "family": family, "variant": variant, "reference": ref})
                row.update(top1=run["ir_top1"], ir_mb=run["ir_mb"], source=f"measured here ({run['calibration_items']} "
                                                                         f"calibration, {run['n']} test images)")
            else:
                row["ir_mb"] = ir_size(model, recipe, cfg, work)
                row["top1"] = known[model].top1 if recipe == "fp32" else None
                row["source"] = "zoo (full test set)" if recipe == "fp32" else "-"
            if ref is not None:  # the table keeps the 3-seed number; a run here is in the runs table
                row.update(top1=ref["ir_top1"], source=R.REFERENCE_LABEL)
            rows.append(row)
    return rows, runs


def speed(cfg: DemoConfig, work: Path) -> dict:
    """The three paths on ``cfg.speed_model`` (random weights and calibration): stock NNCF int8 of the model as it is,
    its no-surgery 4-bit IR (plain_w4a8_ec), and the converted model's Q-MLP int8 IR, against that stock IR and the
    float IR (``demo_report.SPEED_PATHS``)."""
    from .benchmark import ov_latency
    from .export.exporter import export_model
    from .hardware import cpu_capabilities
    from .sources import ModelSource

    sources = []
    converted = f"qmlp_{cfg.speed_model}"
    for model, recipe in ((cfg.speed_model, "fp32"), (cfg.speed_model, STOCK_INT8), (cfg.speed_model, NO_SURGERY),
                          (converted, "qmlp_w8a8")):
        extra = {} if recipe == "fp32" else {"recipe": recipe, "random_calibration": True,
                                             "calibration_size": cfg.speed_calibration}
        ir = export_model(ModelSource(model), str(work / f"speed.{model}.{recipe}"), dynamic_batch=True,
                          force=True, **extra)
        sources.append(ov_latency.ir_source(ir.xml))
    hints = ["f32", "bf16"] if cpu_capabilities().bf16 else ["f32"]
    bench = ov_latency.BenchConfig(devices=["CPU"], hints=hints, batch=cfg.speed_batch,
                                   duration_s=cfg.speed_duration_s, warmup=1, repeats=cfg.speed_repeats,
                                   versus=STOCK_INT8)
    return ov_latency.run(sources, bench, progress=False, log=log_line)


def range_figure(path: Path, cfg: DemoConfig) -> Path:
    from .analysis import report
    from .analysis.analyze import build_probe, site_ranges
    from .sources import DataSource, ModelSource

    data = DataSource()
    base, qmlp = (site_ranges(build_probe(ModelSource(n).load().model, data, cfg.range_images, 0, 0, log_line))
                  for n in R.RANGE_PAIR)
    return report.range_by_depth(qmlp, path, R.RANGE_PAIR[1], compare=base, compare_title=R.RANGE_PAIR[0])


def run(cfg: DemoConfig = DemoConfig()) -> Path:
    """Every step; writes ``cfg.out``/report.html and returns its path."""
    steps = Steps(5)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with steps.step("zoo"):
        entries = ensure_zoo()
        print(R.markdown(R.zoo_table(entries)), flush=True)
    with tempfile.TemporaryDirectory(prefix="qmlp-demo-") as tmp:
        with steps.step("what it buys: reference top-1, IR sizes, a real run per family"):
            rows, runs = what_it_buys(entries, cfg, Path(tmp))
            print("\n" + R.markdown(R.buys_table(rows)) + "\n\n" + R.markdown(R.runs_table(runs)), flush=True)
        with steps.step(f"speed: {cfg.speed_model}"):
            latency = speed(cfg, Path(tmp))
            print("\n" + R.markdown(R.speed_table(latency)), flush=True)
    with steps.step("activation ranges by depth"):
        ranges_png = range_figure(out / "range_by_depth.png", cfg)
    with steps.step("report"):
        html_path = R.write(out, rows, runs, latency, ranges_png, cfg, entries, steps.times)
    total = sum(t for _, t in steps.times)
    print("\n" + "\n".join(f"{name}: {t:.0f} s" for name, t in steps.times) + f"\ntotal: {total:.0f} s", flush=True)
    print(f"\nwrote {html_path}", flush=True)
    return html_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m qmlp_nncf.demo", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one family, few images, short measurements (tests)")
    p.add_argument("--out", default="demo", help="report folder (default: demo)")
    args = p.parse_args(argv)
    setup_process()
    run(replace(QUICK if args.quick else DemoConfig(), out=args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
