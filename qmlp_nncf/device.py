"""Device, distributed backend and autocast choices: CUDA when present (one GPU per torchrun process,
NCCL), else the CPU (gloo); bf16 autocast where the hardware has it, fp16 with a grad scaler on older GPUs."""
from __future__ import annotations

import os
from typing import Optional

import torch

AMP_MODES = ("auto", "bf16", "fp16", "off")


def cpu_bf16_supported() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def select_device(requested: str = "auto", local_rank: Optional[int] = None) -> torch.device:
    """``auto``: ``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``. ``cuda`` without a GPU is an error."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
    req = (requested or "auto").lower()
    if req == "auto":
        req = "cuda" if torch.cuda.is_available() else "cpu"
    if req.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: no CUDA device is available here; use --device cpu (or auto)")
        if req == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device(req)
    if req != "cpu":
        raise ValueError(f"--device {requested!r}: choose auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def ddp_backend(device: torch.device) -> str:
    """NCCL for GPUs, gloo for CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


def autocast_dtype(device: torch.device, amp: str = "auto") -> Optional[torch.dtype]:
    """The autocast dtype for ``amp`` on ``device`` (None = full precision)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16
    if amp == "fp16":
        raise ValueError("amp fp16 is for GPUs; on the CPU use bf16 or off")
    return torch.bfloat16 if amp == "bf16" or cpu_bf16_supported() else None


def default_workers(in_memory: bool, local_world: int = 1) -> int:
    """DataLoader workers: none for in-memory tensors, else a share of the cores (at most 8) per process."""
    if in_memory:
        return 0
    return max(0, min(8, (os.cpu_count() or 1) // max(1, local_world) - 1))
