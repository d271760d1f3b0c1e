"""PTQ from a model source and a data source: calibrate on the train split, evaluate on val, write the
quantized checkpoint and its OpenVINO IR into one folder, all or nothing (``qmlp quantize``)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..sources import DataSource, LoadedModel, data_config_of, subset
from .ptq import QuantizationResult, quantize


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RecipeChoice:
    """``--recipe NAME|FILE`` or ``--config FILE``, resolved: the recipe, NNCF's ignored scope, and the
    config (``QuantizeConfig``, for the model, data and training keys it may name)."""

    recipe: object
    ignored_scope: object = None
    config: object = None

    @classmethod
    def resolve(cls, recipe: Optional[str] = None, config: Optional[str] = None) -> "RecipeChoice":
        if config:  # --recipe with --config: the recipe the config starts from (when it names none)
            from .config import load_config

            cfg = load_config(config, recipe=recipe)
            return cls(cfg.recipe, cfg.ignored_scope, cfg)
        if not recipe:
            raise ValueError("give --recipe NAME (see `qmlp quantize --list-recipes`) or --config FILE")
        from .recipes import load_recipe

        return cls(load_recipe(recipe))


def check_config_fits(choice: RecipeChoice, loaded: LoadedModel, data: DataSource) -> None:
    """A config's ``input_info`` / ``num_classes`` must fit the model it is applied to."""
    cfg = choice.config
    if cfg is None:
        return
    shape = getattr(cfg, "input_shape", None)
    if shape is not None:
        want = tuple(shape[1:]) if len(shape) == 4 else tuple(shape)
        have = data.input_size(loaded.model)
        if want != have:
            raise ValueError(f"config input_info.sample_size {list(shape)} does not fit {loaded.arch}, which takes "
                             f"1x{'x'.join(map(str, have))}: fix input_info or the model")
    n = getattr(cfg, "num_classes", None)
    have_n = getattr(loaded.model, "num_classes", None)
    if n is not None and have_n is not None and n != have_n:
        raise ValueError(f"config num_classes {n} does not fit {loaded.arch}, whose head has {have_n} classes")


def quantize_source(loaded: LoadedModel, data: DataSource, choice: RecipeChoice, calibration_size: int = 0,
                    seed: int = 0, log=_log) -> QuantizationResult:
    """PTQ of a float model with calibration images from ``data``'s train split."""
    check_config_fits(choice, loaded, data)
    size = calibration_size or choice.recipe.calibration_size
    calib = data.calibration(loaded.model, size, seed)
    return quantize(loaded.model, calib, choice.recipe, ignored_scope=choice.ignored_scope, log=log)


@dataclass
class QuantizeRun:
    """What ``qmlp quantize`` produced."""

    result: QuantizationResult
    top1: float
    n: int
    checkpoint: Path
    ir: Optional[Path] = None
    ir_mb: Optional[float] = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"top1": self.top1, "n": self.n, **self.result.summary(), "checkpoint": str(self.checkpoint), **self.extra}
        if self.ir is not None:
            d.update(ir=str(self.ir), ir_mb=self.ir_mb)
        return d


def staged_dir(out: Path, force: bool) -> Path:
    """A temporary folder next to ``out`` to build into (renamed into place by :func:`commit_dir`)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ValueError(f"{out} is not empty; pass --force to overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))


def commit_dir(tmp: Path, out: Path) -> None:
    tmp.chmod(0o755)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "x")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def quantize_to_dir(loaded: LoadedModel, data: DataSource, choice: RecipeChoice, out: str | Path, *,
                    calibration_size: int = 0, limit: int = 0, export: bool = True, force: bool = False,
                    batch_size: int = 256, seed: int = 0, progress: bool = False, log=_log) -> QuantizeRun:
    """Quantize, evaluate on val, write ``quantized.pth`` (+ ``ir/model.xml``) to ``out`` atomically."""
    from ..checkpoint import quantized_payload, save_checkpoint
    from ..evaluation import evaluate
    from ..export import export_ir

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ValueError(f"{out} is not empty; pass --force to overwrite")
    val = subset(data.dataset("val", loaded.model), limit)  # fail on bad data before the slow part
    result = quantize_source(loaded, data, choice, calibration_size, seed, log)
    metrics = evaluate(result.model, val, batch_size=batch_size, progress=progress)
    source = loaded.source.describe()
    payload = {"state_dict": result.model.state_dict(), "arch": loaded.arch,
               "model_kwargs": loaded.meta.get("model_kwargs", {}), "recipe": result.recipe.name,
               "report": result.report, "top1": metrics["top1"], "test_images": metrics["n"],
               "float_top1": loaded.meta.get("top1"), "source": loaded.source.checkpoint or loaded.arch,
               "model_source": loaded.source.to_json(), "data": data.to_json(),
               **{k: loaded.meta[k] for k in ("qmlp_surgery", "base") if k in loaded.meta},
               **quantized_payload(result.model)}
    tmp = staged_dir(out, force)
    try:
        save_checkpoint(tmp / "quantized.pth", payload)
        run = QuantizeRun(result, metrics["top1"], metrics["n"], out / "quantized.pth",
                          extra={"model": loaded.arch, "float_top1": loaded.meta.get("top1"),
                                 "data": data.describe("val"), "calibration": data.describe("train")})
        if export:
            shape = (1, *data.input_size(loaded.model))
            ir = export_ir(result.model, tmp / "ir", shape, metadata={
                "recipe": result.recipe.name, "source_checkpoint": source, "torch_top1": metrics["top1"],
                "test_images": metrics["n"], "evaluation_data": data.describe("val"),
                "calibration": f"{data.describe('train')} x{result.calibration_items}",
                "data_config": json.dumps(data_config_of(loaded.model, data))})
            run.ir, run.ir_mb = out / "ir" / ir.xml.name, round(ir.bin.stat().st_size / 2**20, 3)
        commit_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out}")
    return run
