"""Top-1 evaluation of torch models (float or NNCF fake-quant) on a dataset."""
from __future__ import annotations


import torch
from torch.utils.data import DataLoader, Dataset

from .progress import bar


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset | DataLoader, batch_size: int = 256,
             progress: bool = False, desc: str = "eval", workers: int = 0) -> dict:
    """Returns ``{"top1": fraction, "n": images, "loss": mean cross-entropy}``; batches go to the device
    the model's parameters are on."""
    loader = dataset if isinstance(dataset, DataLoader) else DataLoader(dataset, batch_size=batch_size,
                                                                        num_workers=workers)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    correct, seen, loss = 0, 0, 0.0
    for x, y in bar(loader, desc=desc, disable=not progress, leave=False):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        correct += int((logits.argmax(-1) == y).sum())
        loss += float(torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        seen += len(y)
    model.train(was_training)
    if seen == 0:
        raise ValueError("evaluation dataset is empty")
    return {"top1": correct / seen, "n": seen, "loss": loss / seen}
