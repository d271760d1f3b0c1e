"""Accuracy of an OpenVINO IR on a dataset (true FP32: ``INFERENCE_PRECISION_HINT=f32``), and its
top-1 agreement with the torch model it came from."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..ir_file import read_ir
from ..progress import bar


def load_ir(xml_or_model) -> Any:
    """An ``ov.Model`` from a path (``ir_file.read_ir``: one clear error for a missing or broken file) or a copy of a
    given ``ov.Model``."""
    if isinstance(xml_or_model, (str, Path)):
        return read_ir(xml_or_model)
    return xml_or_model.clone()


def _predictions(xml_or_model, dataset: Dataset, batch_size: int, device: str, hint: str,
                 progress: bool) -> tuple[np.ndarray, np.ndarray]:
    import openvino as ov

    model = load_ir(xml_or_model)
    shape = model.inputs[0].get_partial_shape()
    model.reshape([batch_size, *[d.get_length() for d in list(shape)[1:]]])
    compiled = ov.Core().compile_model(model, device, {"INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    preds, labels = [], []
    for x, y in bar(DataLoader(dataset, batch_size=batch_size), desc="eval IR", disable=not progress, leave=False):
        n = len(x)
        if n < batch_size:  # static shape: pad the last batch, drop the padding's outputs
            x = torch.cat([x, x.new_zeros(batch_size - n, *x.shape[1:])])
        out = request.infer({0: x.numpy()})[0]
        preds.append(out[:n].argmax(-1))
        labels.append(y.numpy())
    if not preds:
        raise ValueError("evaluation dataset is empty")
    return np.concatenate(preds), np.concatenate(labels)


def ir_top1(xml_or_model, dataset: Dataset, batch_size: int = 100, device: str = "CPU", hint: str = "f32",
            progress: bool = False) -> dict:
    """``{"top1", "n"}`` of an IR (path or ``ov.Model``) on ``(image, label)`` items."""
    preds, labels = _predictions(xml_or_model, dataset, batch_size, device, hint, progress)
    return {"top1": float((preds == labels).mean()), "n": int(len(labels))}


@torch.no_grad()
def torch_ir_agreement(model: torch.nn.Module, xml_or_model, dataset: Dataset, batch_size: int = 100,
                       hint: str = "f32", progress: bool = False) -> dict:
    """Top-1 of the torch model and of its IR, and the share of images where both predict the same."""
    ir_preds, labels = _predictions(xml_or_model, dataset, batch_size, "CPU", hint, progress)
    was_training = model.training
    model.eval()
    torch_preds = np.concatenate([model(x).argmax(-1).numpy()
                                  for x, _ in DataLoader(dataset, batch_size=batch_size)])
    model.train(was_training)
    return {"agreement": float((ir_preds == torch_preds).mean()), "ir_top1": float((ir_preds == labels).mean()),
            "torch_top1": float((torch_preds == labels).mean()), "n": int(len(labels))}
