"""``qmlp quantize``, the library side: a model source (or a float OpenVINO IR), a data source and a resolved recipe
or config (``quantization.choice.RecipeChoice``) in; PTQ with :func:`qmlp_nncf.quantization.quantize` on the
calibration images of ``sources.calibration_for`` (as ``qmlp export --recipe`` and the benchmarks do), val top-1, and
``quantized.pth`` + ``ir/`` in one folder, all or nothing, out as a :class:`QuantizeRun`.

Read ``qmlp quantize`` as: ``cli/quantize.py`` (arguments, the recipe resolved) -> ``pipeline.py`` (this: calibrate,
evaluate, save, export) -> ``quantization/ptq.py`` (``quantize``: the backend and the algorithm) ->
``quantization/algorithms/postpass/algorithm.py`` (``nncf.quantize`` and the post-pass).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .atomic import staged_folder
from .export.openvino_ir import check_w4_kernels, export_ir, quantized_census, record_auto_census
from .hardware import int8_note
from .progress import log_line
from .quantization.ptq import QuantizationResult, quantize
from .quantization.recipes.choice import RecipeChoice
from .sources import DataSource, LoadedModel, calibration_for, data_config_of, subset


@dataclass
class QuantizeRun:
    """What ``qmlp quantize`` produced."""

    result: QuantizationResult
    top1: float
    n: int
    checkpoint: Optional[Path]  # None for an IR quantized on the OpenVINO backend (quantize_ir_to_dir)
    ir: Optional[Path] = None
    ir_mb: Optional[float] = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"top1": self.top1, "n": self.n, **self.result.summary(), **self.extra}
        if self.checkpoint is not None:
            d["checkpoint"] = str(self.checkpoint)
        if self.ir is not None:
            d.update(ir=str(self.ir), ir_mb=self.ir_mb)
        return d


def _int8_note(quantized: bool) -> None:
    note = int8_note(quantized)
    if note:
        log_line(note)


def _check_out(out: str | Path, force: bool) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ValueError(f"{out} is not empty; pass --force to overwrite")
    return out


def quantize_to_dir(loaded: LoadedModel, data: DataSource, choice: RecipeChoice, out: str | Path, *,
                    calibration_size: int = 0, limit: int = 0, export: bool = True, force: bool = False,
                    batch_size: int = 256, seed: int = 0, progress: bool = False, w4_kernels: str = "int8",
                    log=log_line) -> QuantizeRun:
    """Quantize, evaluate on val, write ``quantized.pth`` (+ ``ir/model.xml``) to ``out`` atomically (an ``auto:``
    recipe within its ``max_minutes``)."""
    from .checkpoint import quantized_payload, save_checkpoint
    from .evaluation import evaluate

    out = _check_out(out, force)
    check_w4_kernels(w4_kernels)
    val = subset(data.dataset("val", loaded.model), limit)  # fail on bad data before the slow part
    result = quantize(loaded.model, calibration_for(loaded, data, choice, calibration_size, seed), choice.recipe,
                      ignored_scope=choice.ignored_scope, subset_size=calibration_size or None, log=log)
    if result.auto is not None:  # the search's report and recipe.json carry what its IR runs in float
        record_auto_census(result, quantized_census(result.model, (1, *data.input_size(loaded.model)), w4_kernels),
                           log)
    if export:
        _int8_note(result.recipe.weight_compression is None)
    metrics = evaluate(result.model, val, batch_size=batch_size, progress=progress)
    source = loaded.source.describe()
    payload = {"state_dict": result.model.state_dict(), "arch": loaded.arch,
               "model_kwargs": loaded.meta.get("model_kwargs", {}), "recipe": result.recipe.name,
               "report": result.report, "top1": metrics["top1"], "test_images": metrics["n"],
               "float_top1": loaded.meta.get("top1"), "source": loaded.source.checkpoint or loaded.arch,
               "model_source": loaded.source.to_json(), "data": data.to_json(),
               **{k: loaded.meta[k] for k in ("qmlp_surgery", "base") if k in loaded.meta},
               **quantized_payload(result.model)}
    with staged_folder(out) as tmp:
        save_checkpoint(tmp / "quantized.pth", payload)
        if result.auto is not None:  # the searched recipe, reusable with --recipe FILE
            (tmp / "recipe.json").write_text(json.dumps(result.auto.recipe_json, indent=2) + "\n")
        run = QuantizeRun(result, metrics["top1"], metrics["n"], out / "quantized.pth",
                          extra={"model": loaded.arch, "float_top1": loaded.meta.get("top1"),
                                 "data": data.describe("val"), "calibration": data.describe("train")})
        if export:
            shape = (1, *data.input_size(loaded.model))
            ir = export_ir(result.model, tmp / "ir", shape, metadata={
                "recipe": result.recipe.name, "source_checkpoint": source, "torch_top1": metrics["top1"],
                "test_images": metrics["n"], "evaluation_data": data.describe("val"),
                "calibration": f"{data.describe('train')} x{result.calibration_items}",
                "data_config": json.dumps(data_config_of(loaded.model, data))}, w4_kernels=w4_kernels)
            run.ir, run.ir_mb = out / "ir" / ir.xml.name, round(ir.bin.stat().st_size / 2**20, 3)
    log(f"wrote {out}")
    return run


def quantize_ir_to_dir(ir: str | Path, data: DataSource, choice: RecipeChoice, out: str | Path, *,
                       calibration_size: int = 0, limit: int = 0, force: bool = False, batch_size: int = 100,
                       seed: int = 0, progress: bool = False, log=log_line) -> QuantizeRun:
    """``qmlp quantize --ir``: quantize a float OpenVINO IR on NNCF's OpenVINO backend with the recipe's rules,
    evaluate the quantized IR on val, write ``ir/model.xml`` (rt_info metadata as ``export_ir`` writes it) and
    ``report.json`` (one row per FakeQuantize) to ``out``, all or nothing."""
    import openvino as ov

    from .export.evaluate import ir_top1
    from .export.openvino_ir import XML_NAME, read_metadata, set_metadata, versions
    from .ir_file import read_ir
    from .quantization.openvino_model import image_input
    from .sources import ModelInfo

    out = _check_out(out, force)
    model = read_ir(ir)
    image_input(model)
    source_meta = read_metadata(model)
    info = ModelInfo.of_ir(model, source_meta)
    shape = getattr(choice.config, "input_shape", None)
    if shape is not None and tuple(shape[-3:]) != info.input_size:
        raise ValueError(f"config input_info.sample_size {list(shape)} does not fit the IR, which takes "
                         f"1x{'x'.join(map(str, info.input_size))}: fix input_info or give the matching IR")
    val = subset(data.dataset("val", info), limit)  # fail on bad data before the slow part
    size = choice.items_wanted(calibration_size or None)
    calib = data.calibration(info, size, seed)
    _int8_note(getattr(choice.recipe, "weight_compression", None) is None)
    result = quantize(model, calib, choice.recipe, ignored_scope=choice.ignored_scope, subset_size=size, log=log)
    metrics = ir_top1(result.model, val, batch_size=batch_size, progress=progress)
    meta = {"input_shape": [1, *info.input_size], "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **versions(), "recipe": result.recipe.name, "backend": "openvino", "source_ir": str(ir),
            "ir_top1": metrics["top1"], "test_images": metrics["n"], "evaluation_data": data.describe("val"),
            "calibration": f"{data.describe('train')} x{result.calibration_items}",
            "data_config": json.dumps(data_config_of(info, data))}
    set_metadata(result.model, meta)
    with staged_folder(out) as tmp:
        (tmp / "ir").mkdir()
        ov.save_model(result.model, str(tmp / "ir" / XML_NAME), compress_to_fp16=False)
        (tmp / "report.json").write_text(json.dumps({**result.summary(), "quantizers": result.report}, indent=1))
        mb = round((tmp / "ir" / XML_NAME).with_suffix(".bin").stat().st_size / 2**20, 3)
    run = QuantizeRun(result, metrics["top1"], metrics["n"], None, out / "ir" / XML_NAME, mb,
                      extra={"ir_source": str(ir), "backend": "openvino", "data": data.describe("val"),
                             "calibration": data.describe("train")})
    log(f"wrote {out}")
    return run
