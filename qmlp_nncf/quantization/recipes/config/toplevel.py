"""NNCF 2.x's top-level keys that are not the compression section: the model, its checkpoint and
input shape, the data, the sample scripts' training hyperparameters and the target device."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from ...rules.specs import SpecError, check_type
from ..recipe import TARGET_DEVICES
from .reader import check_config_keys

DEVICE_ALIASES = {"VPU": "NPU", "TRIAL": "ANY"}  # NNCF 2.x: VPU was renamed NPU; TRIAL = no HW constraints


def _resolve(value: str, base_dir: Optional[Path]) -> str:
    """A relative path that exists next to the config -> that path; anything else as given."""
    if base_dir is not None and value and not Path(value).is_absolute() and (base_dir / value).exists():
        return str(base_dir / value)
    return value


def _dataset_name(value: str) -> str:
    return "fashion-mnist" if value.lower().replace("_", "-") in ("fashion-mnist", "fashionmnist") else value


def data_source(d: dict, base_dir: Optional[Path]) -> tuple[Optional[str], Optional[str]]:
    """(data, data_dir) from NNCF 2.x's ``dataset`` (a name) / ``dataset_dir`` (its folder) and our ``data``."""
    values = {k: check_type(d[k], str, k) for k in ("data", "dataset_dir", "dataset") if d.get(k) is not None}
    if "data" in values and "dataset_dir" in values and values["data"] != values["dataset_dir"]:
        raise SpecError(f"data and dataset_dir disagree ({values['data']!r}, {values['dataset_dir']!r}); give one")
    folder = values.get("data", values.get("dataset_dir"))
    name = values.get("dataset")
    if folder is None and name is None:
        return None, None

    def spec(value: str) -> str:
        return "fashion-mnist" if _dataset_name(value) == "fashion-mnist" else _resolve(value, base_dir)

    if folder is None or name is None:
        return spec(folder if name is None else name), None
    folder_key = "data" if "data" in values else "dataset_dir"
    if _dataset_name(folder) == _dataset_name(name):
        return spec(name), None
    if _dataset_name(name) == "fashion-mnist":  # the folder of its IDX files
        return "fashion-mnist", _resolve(folder, base_dir)
    if name.lower() == "imagenet":  # NNCF 2.x reads ImageNet as an ImageFolder root with train/ and val/
        return _resolve(folder, base_dir), None
    raise SpecError(f"dataset {name!r} with {folder_key} {folder!r}: only 'imagenet' (an ImageFolder root with "
                    f"train/ and val/) or 'fashion-mnist' (the folder of its IDX files) combine with a folder here; "
                    f"give the folder alone (an ImageFolder root) or the name alone")


def checkpoint(d: dict, base_dir: Optional[Path]) -> Optional[str]:
    ckpt = {k: check_type(d[k], str, k) for k in ("checkpoint", "weights") if d.get(k) is not None}
    if len(set(ckpt.values())) > 1:
        raise SpecError(f"checkpoint and weights (NNCF 2.x's name) disagree ({ckpt['checkpoint']!r}, "
                        f"{ckpt['weights']!r}); give one")
    value = next(iter(ckpt.values()), None)
    if not value:
        return None
    if "://" in value or base_dir is None or Path(value).is_absolute():
        return value
    return str(base_dir / value)


def input_shape(info: Any, ignored: list) -> Optional[tuple]:
    if info is None:
        return None
    if isinstance(info, list):
        if len(info) != 1:
            raise SpecError(f"input_info: one input only, got a list of {len(info)}; give one object "
                            f"{{\"sample_size\": [1, 1, 28, 28]}}")
        info = info[0]
    check_config_keys(info, {"sample_size", "type"}, "input_info", ignored, ignorable={"filler"},
                      unsupported={"keyword": "inputs passed to forward() by keyword are not supported; the input "
                                              "is passed positionally"})
    if info.get("type", "float") not in ("float", "float32"):
        raise SpecError(f"input_info.type: {info['type']!r}: only float inputs are supported ('float')")
    if "sample_size" not in info:
        raise SpecError("input_info.sample_size: required, e.g. [1, 1, 28, 28]")
    size = check_type(info["sample_size"], list, "input_info.sample_size")
    for i, dim in enumerate(size):
        if check_type(dim, int, f"input_info.sample_size[{i}]") < 1:
            raise SpecError(f"input_info.sample_size[{i}]: dimensions must be >= 1, got {dim}")
    return tuple(size)


def _number(value: Any, where: str, positive: bool) -> float:
    check_type(value, (int, float), where)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise SpecError(f"{where}: must be {'> 0' if positive else '>= 0'}, got {value}")
    return value


def _agree(found: dict, what: str) -> Any:
    if len(set(found.values())) > 1:
        raise SpecError(f"{' and '.join(found)} disagree ({', '.join(map(str, found.values()))}); give one {what}")
    return next(iter(found.values()), None)


def training_settings(d: dict, ignored: list) -> dict:
    """NNCF 2.x sample-script hyperparameters -> TrainConfig-style keys (only those given)."""
    training: dict = {}
    for key, low in (("epochs", 1), ("batch_size", 1), ("workers", 0)):
        if d.get(key) is not None:
            if check_type(d[key], int, key) < low:
                raise SpecError(f"{key}: must be >= {low}, got {d[key]}")
            training[key] = d[key]
    if d.get("seed") is not None:
        training["seed"] = check_type(d["seed"], int, "seed")
    lr, wd = {}, {}
    if d.get("weight_decay") is not None:
        wd["weight_decay"] = _number(d["weight_decay"], "weight_decay", positive=False)
    opt = d.get("optimizer")
    if opt is not None:
        check_type(opt, dict, "optimizer")  # free-form in NNCF 2.x: every key but the lr / wd ones is ignored
        for key, value in opt.items():
            where = f"optimizer.{key}"
            if key == "base_lr":
                lr[where] = _number(value, where, positive=True)
            elif key == "weight_decay":
                wd[where] = _number(value, where, positive=False)
            elif key in ("schedule_params", "optimizer_params") and isinstance(value, dict):
                for sub, v in value.items():
                    if (key, sub) in (("schedule_params", "base_lr"), ("optimizer_params", "lr")):
                        lr[f"{where}.{sub}"] = _number(v, f"{where}.{sub}", positive=True)
                    elif (key, sub) == ("optimizer_params", "weight_decay"):
                        wd[f"{where}.{sub}"] = _number(v, f"{where}.{sub}", positive=False)
                    else:
                        ignored.append(f"{where}.{sub}")
            else:
                ignored.append(where)
    for key, found in (("lr", lr), ("weight_decay", wd)):
        value = _agree(found, key)
        if value is not None:
            training[key] = value
    return training


def target_device(d: dict) -> Optional[str]:
    """The config's ``target_device``, passed to ``nncf.quantize`` (NNCF's torch backend takes CPU for CPU_SPR)."""
    value = d.get("target_device")
    if value is None:
        return None
    check_type(value, str, "target_device")
    if value not in TARGET_DEVICES and value not in DEVICE_ALIASES:
        raise SpecError(f"target_device: {value!r} unknown; choose one of {list(TARGET_DEVICES)} "
                        f"(NNCF 2.x's 'VPU' is read as NPU, 'TRIAL' as ANY)")
    return DEVICE_ALIASES.get(value, value)
