"""Checkpoints that carry their architecture: ``torch.load(weights_only=True)`` safe dicts.

Layout: ``state_dict`` (the weights to evaluate: EMA weights when EMA was on), ``arch`` (timm
model name), ``model_kwargs``, ``config`` (training config), ``data_fingerprint``, ``top1``,
``epoch``; a resumable training checkpoint adds ``train_state`` (raw model, optimizer, EMA).
A quantized (NNCF) model adds ``nncf_config`` (``nncf.torch.get_config``): loading rebuilds the
float model, re-inserts the quantizers with ``nncf.torch.load_from_config``, then loads the weights;
``qmlp quantize`` also stores ``recipe``, ``float_top1`` and ``source`` (the float checkpoint), and QAT
carries them on.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import timm
import torch

from . import models  # noqa: F401  (registers our models with timm)
from .atomic import write_atomic


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the requested model."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash never leaves a half-written checkpoint behind."""
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    from nncf.common.quantization.structs import QuantizationScheme

    try:
        with torch.serialization.safe_globals([QuantizationScheme]):  # enum inside nncf_config
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, expected a dict of tensors")
    return ckpt


def check_model_name(name: str) -> None:
    """A ValueError that lists close names when timm (with the zoo and Q-MLP models registered) has no ``name``."""
    if name not in timm.list_models():
        close = [m for m in timm.list_models(f"*{name.split('_')[0]}*")][:12]
        raise ValueError(f"unknown model {name!r}; see `qmlp zoo` and `timm.list_models()`"
                         + (f", e.g. {', '.join(close)}" if close else ""))


def create_model(name: str, **kwargs) -> torch.nn.Module:
    """``timm.create_model`` with an error that lists the known names."""
    check_model_name(name)
    return timm.create_model(name, **kwargs)


def load_model(path: str | Path, arch: Optional[str] = None, **kwargs) -> tuple[torch.nn.Module, dict]:
    """Build the model a checkpoint describes (or ``arch``) and load its weights; eval mode."""
    ckpt = read_checkpoint(path)
    state_dict = ckpt.get("state_dict", ckpt)
    arch = arch or ckpt.get("arch")
    if arch is None:
        raise CheckpointError(f"{path} is a bare state_dict: pass the model name (--model)")
    model = create_model(arch, **{**ckpt.get("model_kwargs", {}), **kwargs})
    if "qmlp_surgery" in ckpt:  # a timm model converted by `qmlp convert` without a registered qmlp_ variant
        from .models.surgery import to_qmlp

        surgery = dict(ckpt["qmlp_surgery"])
        to_qmlp(model, **{**surgery, "clip": tuple(surgery.get("clip", (0.0, 6.0)))})
    if "nncf_config" in ckpt:
        model = restore_quantizers(model.eval(), ckpt["nncf_config"])
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit model {arch!r}: {mismatch_summary(str(e))}") from None
    if "nncf_config" in ckpt:
        reset_quantizer_levels(model)
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "train_state")}
    return model.eval(), meta


def mismatch_summary(message: str, keys: int = 3) -> str:
    """torch's ``load_state_dict`` error, shortened to the first ``keys`` keys of each kind."""
    parts = []
    for kind in ("Missing key(s)", "Unexpected key(s)"):
        m = re.search(re.escape(kind) + r' in state_dict: (.*?)(?:\.\s*$|\.\s*\n|\.\s*Unexpected)', message, re.S)
        if m:
            names = re.findall(r'"([^"]+)"', m.group(1))
            more = f" and {len(names) - keys} more" if len(names) > keys else ""
            parts.append(f"{kind.lower().replace('(s)', 's')} {', '.join(names[:keys])}{more}")
    sizes = re.findall(r"size mismatch for ([^:]+): copying a param with shape (\S+ ?\S*) from checkpoint, "
                       r"the shape in current model is (\S+ ?\S*)\.", message)
    for name, have, want in sizes[:keys]:
        parts.append(f"size mismatch for {name}: {have} in the file, {want} in the model")
    if len(sizes) > keys:
        parts.append(f"{len(sizes) - keys} more size mismatches")
    return "; ".join(parts) or message.splitlines()[0][:300]


def restore_quantizers(model: torch.nn.Module, nncf_config: dict) -> torch.nn.Module:
    from nncf.torch import load_from_config

    return load_from_config(model, nncf_config)


def reset_quantizer_levels(model: torch.nn.Module) -> None:
    """``load_state_dict`` restores a quantizer's ``_num_bits`` buffer but not its levels: re-apply."""
    from nncf.torch.function_hook import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer

    for _, hook in get_hook_storage(model).named_hooks():
        if isinstance(hook, BaseQuantizer):
            hook.num_bits = int(hook._num_bits.item())


def is_quantized(model: torch.nn.Module) -> bool:
    """True if ``model`` holds NNCF hooks (quantizers), i.e. came from ``nncf.quantize`` or a quantized checkpoint."""
    from nncf.torch.function_hook import get_hook_storage

    try:
        return not get_hook_storage(model).is_empty()
    except AttributeError:  # a float model: no NNCF hook storage
        return False


def quantized_payload(model: torch.nn.Module) -> dict:
    """The checkpoint keys that make an NNCF model loadable (empty for a float model)."""
    from nncf.torch import get_config

    return {"nncf_config": get_config(model)} if is_quantized(model) else {}


QUANTIZED_PROVENANCE = ("recipe", "float_top1", "source")  # keys a quantized checkpoint passes on through QAT


def require_float(meta: dict, checkpoint, purpose: str) -> None:
    """Raise a ValueError if ``meta`` (from :func:`load_model`) is a quantized checkpoint's: ``purpose``
    (e.g. ``--recipe``) quantizes or converts, which needs the float model."""
    if "nncf_config" in meta:
        source = f"; its float source is {meta['source']}" if meta.get("source") else ""
        raise ValueError(f"{checkpoint} is already quantized (recipe {meta.get('recipe') or 'unknown'}): "
                         f"{purpose} needs a float checkpoint{source}")
