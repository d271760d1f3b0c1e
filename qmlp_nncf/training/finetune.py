"""Distillation fine-tuning of a converted Q-MLP checkpoint from its base model (``qmlp finetune``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..checkpoint import read_checkpoint
from ..sources import DataSource, ModelSource
from .loop import TrainConfig, train


def teacher_source(converted: dict, teacher: Optional[str]) -> dict | str:
    """The float teacher: ``teacher`` (checkpoint path or zoo name), else the base the checkpoint records."""
    if teacher:
        if Path(teacher).is_file():
            return teacher
        from ..zoo import get_entry

        return str(get_entry(teacher).checkpoint)  # a zoo name (KeyError lists the zoo)
    if converted.get("base_source"):
        return dict(converted["base_source"])
    if converted.get("base_checkpoint"):
        return converted["base_checkpoint"]
    raise ValueError("the converted checkpoint does not name its base model: pass --teacher")


def finetune_config(converted_path: str, out: str, teacher: Optional[str] = None,
                    data: DataSource = DataSource(), **options) -> TrainConfig:
    """The TrainConfig of ``qmlp finetune``: init = the converted checkpoint, teacher = its base."""
    from ..models import family_of_name

    converted = read_checkpoint(converted_path)
    name = converted.get("arch", "")
    if not (name.startswith("qmlp_") or "qmlp_surgery" in converted):
        raise ValueError(f"{converted_path} is not a Q-MLP checkpoint (arch {name!r}); make one with `qmlp convert`")
    t = teacher_source(converted, teacher)
    t_arch = ModelSource.from_json(t).name if isinstance(t, dict) else read_checkpoint(t).get("arch")
    if t_arch and family_of_name(t_arch) != family_of_name(name):
        raise ValueError(f"teacher {t_arch!r} is not of the same family as {name!r}")
    return TrainConfig(model=name, out=out, init_from=converted_path, teacher=t, data=data.to_json(),
                       data_dir=data.data_dir, **options)


def finetune(converted_path: str, out: str, teacher: Optional[str] = None, data: DataSource = DataSource(),
             resume: bool = False, log=print, **options) -> dict:
    """Fine-tune; returns the release checkpoint's metadata (top1, epochs, time...)."""
    return train(finetune_config(converted_path, out, teacher, data, **options), resume=resume, log=log)
