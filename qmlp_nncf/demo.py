"""``make demo``: the whole pipeline on the embedded default, the Fashion-MNIST model zoo.

1. load the zoo (train a base model whose checkpoint is missing) and print its float accuracy;
2. quantize the 6-block models of the three families and their Q-MLP models with the stock NNCF baselines and
   the Q-MLP recipes, evaluate in torch and in OpenVINO on the first ``DEMO_TEST_IMAGES`` test images
   (``benchmarks/accuracy.py`` engine; the full-test-set, 3-seed numbers are in docs/results.md);
3. OpenVINO throughput of every IR, then latency/throughput of a 224-px Q-MLP int8 IR against its float IR (f32
   and bf16 hints) and against stock NNCF's int8 IR of the same model (random weights: where int8 matters;
   ``ov_latency`` engine);
4. ``demo/report.html``: accuracy vs size and vs throughput per family, and the range-by-depth figure of a
   base vs Q-MLP pair (``analysis`` engine).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from .checkpoint import load_model
from .data import FashionMNIST
from .evaluation import evaluate
from .training import TrainConfig, train
from .training.release import release
from .zoo import ZooEntry, checkpoint_path, list_entries

BASE_MODELS = ("mixer_fmnist", "resmlp_fmnist", "gmlp_fmnist")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_zoo() -> list[ZooEntry]:
    """Every base model has a checkpoint: train the missing ones with the zoo's default recipe."""
    known = {e.name: e for e in list_entries()}
    for name in BASE_MODELS:
        if name in known and checkpoint_path(name).exists():
            continue
        _log(f"{name}: no checkpoint in the zoo, training it (15 epochs, ~30-60 min on 2 cores)")
        out = f"runs/{name}"
        result = train(TrainConfig(model=name, out=out, epochs=15, ema_decay=0.999), resume=True, log=_log)
        release(name, f"{out}/model.pth", result,
                command=f"qmlp train --model {name} --out {out} --epochs 15 --ema 0.999 --zoo")
    return list_entries()


DEMO_RECIPES = ("nncf_transformer_w8a8", "nncf_transformer_w4a4", "qmlp_w8a8", "qmlp_w4a4")
DEMO_MODELS = BASE_MODELS + tuple(f"qmlp_{m}" for m in BASE_MODELS)
DEMO_TEST_IMAGES = 2000
# (recipe, on a Q-MLP model) -> the label of the point in the report's figures
VARIANTS = {("fp32", False): "float", ("fp32", True): "float", ("nncf_transformer_w8a8", False): "stock NNCF int8",
            ("qmlp_w8a8", True): "Q-MLP int8", ("nncf_transformer_w4a4", False): "stock 4-bit",
            ("qmlp_w4a4", True): "Q-MLP 4-bit"}
STOCK_INT8 = "nncf_default_w8a8"  # what a user gets from nncf.quantize alone: the speed to beat
LATENCY_MODEL = "qmlp_mixer_b16_224"  # 224 px, where int8 matters; random weights (no pretrained weights here)
RANGE_PAIR = ("resmlp_fmnist", "qmlp_resmlp_fmnist")
OUT = Path("demo")


def accuracy_table(ir_dir: Path) -> dict:
    from .benchmark import accuracy

    known = {e.name: e for e in list_entries()}
    models = [m for m in DEMO_MODELS if m in known]  # the Q-MLP models exist once fine-tuned into the zoo
    # stock recipes on the base models, Q-MLP recipes on the Q-MLP models: the pairs the figures compare
    # (the stock recipes on Q-MLP models are the slowest PTQ runs and no figure shows them)
    stock = [r for r in DEMO_RECIPES if accuracy.is_baseline(r)]
    qmlp = [m for m in models if known[m].base]
    runs = [([m for m in models if m not in qmlp], stock), (qmlp, [r for r in DEMO_RECIPES if r not in stock])]
    result = accuracy.merge([accuracy.run(accuracy.AccuracyConfig(models=ms, recipes=rs, limit=DEMO_TEST_IMAGES,
                                                                  ir_dir=str(ir_dir)))
                             for ms, rs in runs if ms])
    print("\n" + accuracy.markdown(result), flush=True)
    return result


def zoo_speed(entries: list[ZooEntry], ir_dir: Path) -> dict:
    """OpenVINO throughput (f32 hint, batch 16) of every zoo IR the accuracy run kept, and of the float IRs."""
    from .benchmark import ov_latency
    from .export.pipeline import export_model
    from .sources import ModelSource

    sources = []
    for e in entries:
        export_model(ModelSource(e.name), str(ir_dir / f"{e.name}.fp32"), force=True)
    for xml in sorted(ir_dir.glob("*/model.xml")):
        sources.append(ov_latency.ir_source(xml))
    cfg = ov_latency.BenchConfig(devices=["CPU"], hints=["f32"], batch=16, duration_s=1.0)
    return ov_latency.run(sources, cfg, progress=False, log=_log)


def latency_table(model: str) -> dict:
    from .benchmark import ov_latency

    cfg = ov_latency.BenchConfig(devices=["CPU"], hints=["f32", "bf16"], batch=16, duration_s=3.0,
                                 random_calibration=True, repeats=3, versus=STOCK_INT8)
    result = ov_latency.benchmark([], [model], ["qmlp_w8a8", STOCK_INT8], cfg)
    print(f"\n{model}: random weights, calibrated on random images (speed only; no pretrained weights exist "
          f"here)\n" + ov_latency.markdown(result), flush=True)
    return result


def _points(entries: list[ZooEntry], acc: dict, speed: dict) -> list[dict]:
    qmlp = {e.name: e.base is not None for e in entries}
    family = {e.name: e.family for e in entries}
    fps = {(r["model"], r["recipe"]): r["fps"] for r in speed["rows"] if r["mode"] == "throughput"}
    size = {(r["model"], r["recipe"]): r["ir_mb"] for r in speed["rows"]}
    points = []
    for f in acc["floats"]:
        points.append({"model": f["model"], "recipe": "fp32", "top1": 100 * f["top1"]})
    for r in acc["rows"]:
        points.append({"model": r["model"], "recipe": r["recipe"],
                       "top1": 100 * r.get("ir_top1", r["torch_top1"])})
    out = []
    for p in points:
        label = VARIANTS.get((p["recipe"], qmlp.get(p["model"], False)))
        if label is None:
            continue
        out.append({**p, "family": family.get(p["model"], "?"), "variant": label,
                    "fps": fps.get((p["model"], p["recipe"])), "ir_mb": size.get((p["model"], p["recipe"]))})
    return out


def range_figure(path: Path) -> Path:
    from .analysis import report
    from .analysis.analyze import build_probe, site_ranges
    from .sources import DataSource, ModelSource

    data = DataSource()
    base, qmlp = (site_ranges(build_probe(ModelSource(n).load().model, data, 128, 0, 0, _log)) for n in RANGE_PAIR)
    return report.range_by_depth(qmlp, path, RANGE_PAIR[1], compare=base, compare_title=RANGE_PAIR[0])


def write_report(entries, zoo_rows, acc, speed, latency) -> Path:
    from .analysis import report
    from .benchmark import accuracy, ov_latency

    OUT.mkdir(exist_ok=True)
    points = _points(entries, acc, speed)
    size_png = report.scatter(points, OUT / "accuracy_vs_size.png", "ir_mb", "OpenVINO IR size (MB)",
                              "Top-1 vs IR size, Fashion-MNIST zoo", logx=True)
    speed_png = report.scatter(points, OUT / "accuracy_vs_throughput.png", "fps",
                               "OpenVINO CPU throughput, batch 16, f32 hint (img/s)",
                               "Top-1 vs throughput, Fashion-MNIST zoo")
    ranges_png = range_figure(OUT / "range_by_depth.png")
    acc_md = accuracy.markdown(acc).split("\n")
    table = [c.strip() for c in acc_md[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in acc_md[2:] if line.startswith("|")]
    sections = [
        {"title": "The zoo", "table": zoo_rows},
        {"title": "Accuracy", "table": [table] + rows,
         "text": [line for line in acc_md if line and not line.startswith("|")]},
        {"title": "Accuracy vs size", "figure": size_png,
         "text": ["Top-1 of the OpenVINO IR (torch fake-quant where no IR was measured) against the IR's size on "
                  "disk. Stock NNCF rows are baselines on the base models; Q-MLP rows are the Q-MLP models."]},
        {"title": "Accuracy vs throughput", "figure": speed_png,
         "text": ["The same points against OpenVINO CPU throughput. These 28x28 models are small: overheads "
                  "dominate, so int8 speed shows on the 224-px model below."]},
        {"title": f"Speed where int8 matters: {LATENCY_MODEL}",
         "text": ["Random weights, calibrated on random images: a speed measurement only."] +
                 [line for line in ov_latency.markdown(latency).split("\n") if line and not line.startswith("|")],
         "table": _md_table(ov_latency.markdown(latency))},
        {"title": "Why: activation ranges by depth", "figure": ranges_png,
         "text": [f"{RANGE_PAIR[0]} (dashed) against its Q-MLP model {RANGE_PAIR[1]} (solid): the remedies "
                  f"(LayerNorm, bounded activation) exist to shrink these ranges. `qmlp analyze --model "
                  f"{RANGE_PAIR[1]} --compare {RANGE_PAIR[0]} --out DIR` gives the full analysis."]},
    ]
    _, html_path = report.write_report(OUT, "qmlp_nncf demo", sections)
    return html_path


def _md_table(md: str) -> list[list[str]]:
    lines = [line for line in md.split("\n") if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for i, line in enumerate(lines) if i != 1]


def main() -> int:
    entries = ensure_zoo()
    test = FashionMNIST("test")
    zoo_rows = [["model", "family", "params", "epochs", "reference top-1", "measured top-1", "eval time"]]
    print("| " + " | ".join(zoo_rows[0]) + " |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for e in entries:
        model, _ = load_model(e.checkpoint)
        t0 = time.time()
        top1 = evaluate(model, test)["top1"]
        zoo_rows.append([e.name, e.family, f"{e.params:,}", str(e.epochs), f"{100 * e.top1:.2f} %",
                         f"{100 * top1:.2f} %", f"{time.time() - t0:.1f} s"])
        print("| " + " | ".join(zoo_rows[-1]) + " |", flush=True)
    with tempfile.TemporaryDirectory(prefix="qmlp-demo-") as tmp:
        acc = accuracy_table(Path(tmp))
        speed = zoo_speed([e for e in entries if e.name in DEMO_MODELS], Path(tmp))
    latency = latency_table(LATENCY_MODEL)
    html_path = write_report(entries, zoo_rows, acc, speed, latency)
    print(f"\nwrote {html_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
