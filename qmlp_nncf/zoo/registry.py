"""The zoo index: ``zoo.json`` holds one entry per committed checkpoint, with its reference top-1."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..atomic import write_atomic, write_json_atomic

ZOO_DIR = Path(__file__).resolve().parent
INDEX = ZOO_DIR / "zoo.json"
FAMILIES = ("mixer", "resmlp", "gmlp")


@dataclass
class ZooEntry:
    name: str  # timm model name, also the checkpoint's file stem
    family: str  # mixer | resmlp | gmlp
    params: int
    top1: float  # float top-1 (fraction) on the full Fashion-MNIST test set
    epochs: int
    train_time_s: float
    command: str  # reproduces the checkpoint
    base: Optional[str] = None  # for Q-MLP models: the zoo model it was converted from
    extra: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.name)

    def to_json(self) -> dict:
        return dict(asdict(self), checkpoint=str(self.checkpoint))


def checkpoint_path(name: str) -> Path:
    return ZOO_DIR / "checkpoints" / f"{name}.pth"


def _read() -> list[dict]:
    return json.loads(INDEX.read_text())["models"] if INDEX.exists() else []


def list_entries() -> list[ZooEntry]:
    return [ZooEntry(**e) for e in _read()]


def get_entry(name: str) -> ZooEntry:
    for e in list_entries():
        if e.name == name:
            return e
    known = ", ".join(e.name for e in list_entries()) or "none yet"
    raise KeyError(f"no zoo model named {name!r}; the zoo has: {known} (see `qmlp zoo`)")


def record_entry(entry: ZooEntry) -> None:
    """Add or replace ``entry`` in ``zoo.json`` (atomic write)."""
    if entry.family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {entry.family!r}")
    models = [e for e in _read() if e["name"] != entry.name] + [asdict(entry)]
    models.sort(key=lambda e: (e.get("base") is not None, e["name"]))
    write_json_atomic(INDEX, {"models": models})


def publish(name: str, family: str, run_checkpoint: str | Path, result: dict, command: str,
            base: Optional[str] = None, extra: Optional[dict] = None) -> ZooEntry:
    """Copy a release checkpoint (``model.pth`` of a run) into the zoo and record its entry."""
    dest = checkpoint_path(name)
    write_atomic(dest, lambda tmp: shutil.copyfile(run_checkpoint, tmp))
    entry = ZooEntry(name=name, family=family, params=result["params"], top1=result["top1"],
                     epochs=result["epoch"], train_time_s=result["train_time_s"], command=command, base=base,
                     extra=dict(extra or {}))
    record_entry(entry)
    return entry
