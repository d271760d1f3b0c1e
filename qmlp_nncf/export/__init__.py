"""OpenVINO IR export (``qmlp export``) and IR evaluation (``qmlp eval --ir``)."""
from .evaluate import ir_top1, load_ir, torch_ir_agreement
from .openvino_ir import ExportError, ExportResult, export_ir, read_metadata

__all__ = ["ExportError", "ExportResult", "export_ir", "ir_top1", "load_ir", "read_metadata", "torch_ir_agreement"]
