"""Release a training run into the zoo: its curve, and storage that keeps zoo checkpoints well under 5 MB."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..checkpoint import load_model, read_checkpoint, save_checkpoint
from ..evaluation import evaluate
from ..sources import DataSource

# A release checkpoint larger than this is stored with float16 weights; they are cast back to float32 on load,
# and the zoo's top-1 is re-measured on the stored weights.
HALF_ABOVE_MB = 4.0


def half_checkpoint(src: str | Path, dest: str | Path) -> dict:
    """Write ``src`` with float16 floating-point weights to ``dest``; ``top1`` re-measured on the full val
    split unless the run evaluated a subset (then kept). Returns the written payload's metadata."""
    payload = read_checkpoint(src)
    payload["state_dict"] = {k: v.half() if v.dtype == torch.float32 else v for k, v in payload["state_dict"].items()}
    payload["stored_dtype"] = "float16"
    save_checkpoint(dest, payload)
    if payload.get("top1") is not None and not payload.get("config", {}).get("test_subset"):
        model = load_model(dest)[0]
        data = DataSource.from_json(payload["data"]) if payload.get("data") else DataSource()
        payload["top1_float32"], payload["top1"] = payload["top1"], evaluate(model, data.dataset("val", model))["top1"]
        save_checkpoint(dest, payload)
    return {k: v for k, v in payload.items() if k != "state_dict"}


def release(name: str, run_checkpoint: str | Path, result: dict, command: str, base: Optional[str] = None,
            extra: Optional[dict] = None):
    """``zoo.publish`` of a run's ``model.pth`` with its top-1 curve in ``extra``; float16 storage above
    ``HALF_ABOVE_MB``. Returns the zoo entry."""
    from ..models import family_of_name
    from ..zoo import publish

    run_checkpoint = Path(run_checkpoint)
    meta = read_checkpoint(run_checkpoint)
    extra = {"curve_top1": [h["top1"] for h in meta.get("history", [])], **(extra or {})}
    if run_checkpoint.stat().st_size > HALF_ABOVE_MB * 2**20:
        half = run_checkpoint.with_name(run_checkpoint.stem + ".float16.pth")
        written = half_checkpoint(run_checkpoint, half)
        result = dict(result, top1=written["top1"])
        extra |= {"stored_dtype": "float16", "top1_float32": written.get("top1_float32")}
        run_checkpoint = half
    return publish(name, family_of_name(name), run_checkpoint, result, command, base=base, extra=extra)
