"""The IRs to benchmark: given on the command line (``ir_source``) or built from model x recipe (``build_sources``)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .settings import FP32, BenchConfig, BenchmarkError, IRSource


def ir_source(path: str | Path) -> IRSource:
    """An IR given on the command line; model and recipe from its qmlp_nncf metadata when present."""
    from ...export import load_ir, read_metadata

    path = Path(path)
    xml = path / "model.xml" if path.is_dir() else path
    meta = read_metadata(load_ir(xml))
    return IRSource(xml, meta.get("model", xml.parent.name if xml.stem == "model" else xml.stem),
                    meta.get("recipe", "unknown"), note=f"IR {xml}")


def build_sources(models: list[str], recipes: list[str], workdir: Path, cfg: BenchConfig,
                  log: Callable[[str], None]) -> list[IRSource]:
    """Prepare, quantize and export every model x recipe (plus fp32, plus the base model of a qmlp_*)."""
    from ...export import export_ir
    from ...export.openvino_ir import W4_KERNELS
    from ...data import DataError
    from ...export.prepare import check_recipe, prepare
    from ...sources import DataSource, ModelSource

    data = DataSource.from_json(cfg.data) if cfg.data else DataSource()
    from ...checkpoint import check_model_name

    for name in models:
        check_model_name(name)  # before the first model is built; a data error below is then the data's
    for r in recipes:
        check_recipe(r)
    if cfg.data and not cfg.random_calibration and set(recipes) - {FP32}:
        data.check("train")  # before the first model is built
    names = list(dict.fromkeys(m for name in models
                               for m in ([name.removeprefix("qmlp_")] if name.startswith("qmlp_") else []) + [name]))
    sources = []
    for name in names:
        wanted = [FP32] if name not in models else list(dict.fromkeys([FP32, *recipes]))
        for recipe in wanted:
            t = time.perf_counter()
            log(f"preparing {name} / {recipe} ...")
            source = ModelSource(name, model_kwargs=cfg.model_kwargs)
            try:
                prepared = prepare(source, recipe, data, cfg.calibration_size, cfg.random_calibration)
            except (ValueError, DataError) as e:
                if cfg.data or cfg.random_calibration:
                    raise
                # the default data (Fashion-MNIST, 28 px gray) does not fit the model: the fix is other data, not
                # the data error's own hint (e.g. --convert-channels), which suits a model made for that data
                raise BenchmarkError(f"{name} / {recipe}: the default calibration data (Fashion-MNIST) does not fit "
                                     f"this model ({str(e).split(':')[0]}); pass --data <ImageFolder root> (its "
                                     f"train split calibrates), or --random-calibration for a speed-only run") from None
            calibration = prepared.metadata.get("calibration")
            note = "exported on the fly" + (f", calibration {calibration}" if calibration else "")
            for kernels in cfg.w4_kernels:
                result = export_ir(prepared.model, workdir / f"{name}.{recipe}.{kernels}", (1, *prepared.input_shape),
                                   dynamic_batch=True, metadata=prepared.metadata, w4_kernels=kernels)
                static_w4 = result.metadata.get("w4_kernels") in W4_KERNELS
                label = f"{recipe}@{kernels}" if static_w4 and len(cfg.w4_kernels) > 1 else recipe
                sources.append(IRSource(result.xml, name, label, note=note))
                if not static_w4:
                    break  # no 4-bit GEMM weights with static activations: one IR says it all
            log(f"  {name} / {recipe}: IR ready in {time.perf_counter() - t:.0f} s")
    return sources

