"""Model source (+ recipe, calibrated on a data source as ``qmlp quantize`` does: ``sources.calibration_for`` +
``quantization.quantize``) -> OpenVINO IR folder or OVMS repository (``qmlp export``),
optionally with the IR's accuracy and torch agreement on the val split."""
from __future__ import annotations

from typing import Optional

from ..hardware import int8_note
from ..progress import log_line
from ..sources import DataSource, ModelSource, subset
from .evaluate import torch_ir_agreement
from .openvino_ir import ExportError, ExportResult, check_target, check_w4_kernels, export_ir, target_dir
from .prepare import FP32, prepare


def export_model(source: ModelSource, out: Optional[str] = None, *, recipe: str = FP32,
                 data: Optional[DataSource] = None, calibration_size: int = 0, random_calibration: bool = False,
                 batch: int = 1, dynamic_batch: bool = False, ovms_repo: Optional[str] = None,
                 ovms_name: Optional[str] = None, ovms_version: int = 1, force: bool = False,
                 evaluate: bool = False, limit: int = 0, progress: bool = False,
                 w4_kernels: str = "int8", target_device: Optional[str] = None) -> ExportResult:
    """Export ``source`` (quantized with ``recipe`` on ``data``'s train split, or random images only with
    ``random_calibration``) to ``out`` or ``<ovms_repo>/<ovms_name>/<ovms_version>/``, atomically.
    ``w4_kernels``: how 4-bit weights run (``export.openvino_ir.convert``)."""
    if bool(out) == bool(ovms_repo):
        raise ExportError("give exactly one destination: --out DIR, or --ovms-repo DIR --ovms-name NAME")
    if bool(ovms_repo) != bool(ovms_name):
        raise ExportError("--ovms-repo and --ovms-name go together (repository folder, served model name)")
    if batch < 1:
        raise ExportError(f"--batch must be >= 1, got {batch}")
    if random_calibration and evaluate:
        raise ExportError("--evaluate needs real data; it cannot go with --random-calibration")
    check_target(target_dir(ovms_repo or out, ovms_name, ovms_version), force)
    check_w4_kernels(w4_kernels)
    note = int8_note(recipe != FP32 or bool(source.checkpoint))
    if note:
        log_line(note)
    data = data or DataSource()
    prepared = prepare(source, recipe, data, calibration_size, random_calibration, target_device)

    measure = None
    if evaluate:
        val = subset(data.dataset("val", prepared.model), limit)

        def measure(ov_model) -> dict:
            m = torch_ir_agreement(prepared.model, ov_model, val, progress=progress)
            return {"accuracy": {"data": data.describe("val"), **m}}

    return export_ir(prepared.model, ovms_repo or out, (batch, *prepared.input_shape), dynamic_batch=dynamic_batch,
                     metadata=prepared.metadata, ovms_name=ovms_name, ovms_version=ovms_version, force=force,
                     measure=measure, w4_kernels=w4_kernels)


