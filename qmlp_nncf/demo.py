"""``make demo``: the whole pipeline on the embedded default, the Fashion-MNIST model zoo.

1. load the zoo (train a base model whose checkpoint is missing) and print its float accuracy;
2. quantize every zoo model with the stock NNCF 4-bit baseline and the Q-MLP recipes, evaluate in
   torch and in OpenVINO (``benchmarks/accuracy.py`` engine);
3. measure OpenVINO latency/throughput of the Q-MLP int8 IR against its float IR (``ov_latency`` engine).
"""
from __future__ import annotations

import sys
import time

from .checkpoint import load_model
from .data import FashionMNIST
from .evaluation import evaluate
from .models import family_of
from .training import TrainConfig, train
from .zoo import ZooEntry, checkpoint_path, list_entries, publish

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
        publish(name, family_of(name), f"{out}/model.pth", result,
                command=f"qmlp train --model {name} --out {out} --epochs 15 --ema 0.999 --zoo")
    return list_entries()


DEMO_RECIPES = ("nncf_transformer_w4a4", "qmlp_w8a8", "qmlp_w4a4")


def accuracy_table() -> None:
    from .benchmark import accuracy

    result = accuracy.run(accuracy.AccuracyConfig(recipes=list(DEMO_RECIPES), matching_only=True))
    print("\n" + accuracy.markdown(result), flush=True)


def latency_table(model: str) -> None:
    from .benchmark import ov_latency

    cfg = ov_latency.BenchConfig(devices=["CPU"], hints=["f32", "bf16"], batch=16, duration_s=3.0)
    result = ov_latency.benchmark([], [model], ["qmlp_w8a8"], cfg)
    print("\n" + ov_latency.markdown(result), flush=True)


def main() -> int:
    entries = ensure_zoo()
    test = FashionMNIST("test")
    print("| model | family | params | epochs | reference top-1 | measured top-1 | eval time |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for e in entries:
        model, _ = load_model(e.checkpoint)
        t0 = time.time()
        top1 = evaluate(model, test)["top1"]
        print(f"| {e.name} | {e.family} | {e.params:,} | {e.epochs} | {100 * e.top1:.2f} % | "
              f"{100 * top1:.2f} % | {time.time() - t0:.1f} s |", flush=True)
    accuracy_table()
    qmlp = [e.name for e in entries if e.base is not None]
    latency_table(qmlp[0] if qmlp else entries[0].name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
