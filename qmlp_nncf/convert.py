"""Base model -> Q-MLP checkpoint (``qmlp convert``): the exact part checked, top-1 before fine-tuning.

A base with a registered Q-MLP variant (``qmlp_<arch>``, e.g. ``qmlp_resmlp_24_224``) is saved under that
name; any other timm MLP-Mixer / ResMLP / gMLP (e.g. ``mixer_s16_224`` with ``img_size=64``) is saved as
its base architecture plus a ``qmlp_surgery`` entry, which ``checkpoint.load_model`` replays."""
from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import timm
import torch
from torch.utils.data import DataLoader

from .models.surgery import QmlpConfig, to_qmlp
from .progress import log_line
from .sources import DataSource, ModelSource, subset


@torch.no_grad()
def _logits(model: torch.nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    outs, labels = [], []
    for x, y in loader:
        outs.append(model(x))
        labels.append(y)
    return torch.cat(outs), torch.cat(labels)


def _top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def convert_checkpoint(source: ModelSource, data: DataSource, out: str | Path, cfg: QmlpConfig = QmlpConfig(),
                       limit: int = 1000, batch_size: int = 256, log=log_line) -> dict:
    """Convert ``source`` to Q-MLP, check it on ``limit`` val images of ``data``, write ``out``."""
    from .checkpoint import create_model, load_model, save_checkpoint

    if limit < 1:
        raise ValueError(f"--limit must be positive, got {limit}")
    loaded = source.load(float_for="qmlp convert")
    base, arch = loaded.model, loaded.arch
    if arch.startswith("qmlp_") or "qmlp_surgery" in loaded.meta:
        raise ValueError(f"{source.describe()} is already a Q-MLP model")
    registered = f"qmlp_{arch}" in timm.list_models("qmlp_*")
    loader = DataLoader(subset(data.dataset("val", base), limit), batch_size=batch_size)

    ref, labels = _logits(base, loader)
    exact = copy.deepcopy(base)
    to_qmlp(exact, layernorm=False, activation=None, token_groups=cfg.token_groups)
    exact_diff = float((_logits(exact, loader)[0] - ref).abs().max())
    model = copy.deepcopy(base)
    report = to_qmlp(model, **asdict(cfg))
    out_logits = _logits(model, loader)[0]
    log(str(report))

    base_kwargs = dict(loaded.meta.get("model_kwargs", {}))
    if registered:
        name, model_kwargs, surgery = f"qmlp_{arch}", {**base_kwargs, **cfg.model_kwargs()}, None
        create_model(name, **model_kwargs).load_state_dict(model.state_dict())  # the checkpoint must load
    else:
        name, model_kwargs, surgery = arch, base_kwargs, {**asdict(cfg), "clip": list(cfg.clip)}
    result = {"model": name if registered else f"{arch} + Q-MLP surgery", "base": arch, "images": len(labels),
              "data": data.describe("val"),
              "exact_part_max_abs_diff": exact_diff, "logits_max_abs_diff": float((out_logits - ref).abs().max()),
              "base_top1": _top1(ref, labels), "top1_before_finetune": _top1(out_logits, labels),
              "top1_agreement": float((out_logits.argmax(-1) == ref.argmax(-1)).float().mean()),
              "params_base": report.params_before, "params": report.params_after}
    base_source = loaded.source
    if base_source.name and not base_source.checkpoint and not base_source.pretrained_file and "zoo" in loaded.meta:
        base_source = ModelSource(checkpoint=str(_zoo_checkpoint(arch)))
    payload = {"state_dict": model.state_dict(), "arch": name, "model_kwargs": model_kwargs, "base": arch,
               "base_source": base_source.to_json(), "base_checkpoint": base_source.checkpoint,
               "conversion": report.to_json(), "top1": result["top1_before_finetune"], "test_images": len(labels),
               "params": report.params_after, "data": data.to_json(),
               **{k: result[k] for k in ("exact_part_max_abs_diff", "logits_max_abs_diff", "base_top1")}}
    if surgery is not None:
        payload["qmlp_surgery"] = surgery
    save_checkpoint(out, payload)
    load_model(out)  # what was written loads back
    log(f"wrote {out}")
    return result


def _zoo_checkpoint(name: str) -> Path:
    from .zoo import get_entry

    return get_entry(name).checkpoint
