"""OpenVINO IR export (``qmlp export``) and IR evaluation (``qmlp eval --ir``)."""
from .evaluate import ir_top1, load_ir, torch_ir_agreement
from .openvino_ir import ExportError, ExportResult, export_ir, read_metadata

__all__ = ["ExportError", "ExportResult", "export_ir", "ir_top1", "load_ir", "read_metadata", "torch_ir_agreement",
           "ir_dataset"]


def ir_dataset(xml_or_model, data, split: str = "val"):
    """``split`` of the data source ``data`` preprocessed for an exported IR (its input shape, class count and
    the timm data config stored at export)."""
    from ..sources import ModelInfo

    model = load_ir(xml_or_model)
    return data.dataset(split, ModelInfo.of_ir(model, read_metadata(model)))
