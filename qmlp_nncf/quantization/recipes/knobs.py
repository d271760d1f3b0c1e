"""The knobs of the algorithms a recipe switches on, as leaf dataclasses (NNCF's ``advanced_parameters`` in spirit):
``error_correction`` (:class:`ErrorCorrection`), ``range_tuning`` (:class:`RangeTuning`) and ``reparameterize``
(:class:`Reparameterization`), each read from a recipe's JSON with one clear error per bad value."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..rules.specs import SpecError, check_keys, check_type, switch_or_knobs

ROUNDINGS = ("gptq", "nearest")  # error_correction.rounding
SCOPES = ("model", "block")  # range_tuning.scope


@dataclass(frozen=True)
class ErrorCorrection:
    """Recipe knob ``"error_correction": {"ridge": 0.1, "rounding": "gptq", "damp": 0.01, "items": 128}``."""

    ridge: Optional[float] = 0.1  # lambda / mean(diag H); None: keep the float weights (rounding only)
    rounding: str = "gptq"
    damp: float = 0.01  # GPTQ's Hessian damping, a fraction of mean(diag H)
    stages: int = 4  # Linears outside a Sequential of blocks: depth-ordered groups, one calibration pass each
    batch: int = 32  # calibration items per forward
    rows: Optional[int] = 8192  # calibration rows kept per Linear (drawn at random; >= 8 per input); None: all
    items: Optional[int] = None  # calibration items it runs (the first ones); None: enough to draw `rows` from
    #                              ITEMS_PER_ROWS x as many rows for every Linear (all of them when rows is None)

    @classmethod
    def from_value(cls, value, where: str) -> Optional["ErrorCorrection"]:
        kw = switch_or_knobs(value, {"ridge", "rounding", "damp", "stages", "batch", "rows", "items"}, where)
        if kw is None:
            return None
        kw = dict(kw)
        if kw.get("ridge") is not None:
            kw["ridge"] = float(check_type(kw["ridge"], (int, float), f"{where}.ridge"))
            if kw["ridge"] <= 0:
                raise SpecError(f"{where}.ridge must be > 0 (or null to keep the float weights), got {kw['ridge']}")
        if kw.get("rounding", "gptq") not in ROUNDINGS:
            raise SpecError(f"{where}.rounding: {kw['rounding']!r} unknown; choose one of {list(ROUNDINGS)}")
        if "damp" in kw:
            kw["damp"] = float(check_type(kw["damp"], (int, float), f"{where}.damp"))
            if not 0 < kw["damp"] < 1:
                raise SpecError(f"{where}.damp must be in (0, 1), got {kw['damp']}")
        for key in ("stages", "batch", "items", "rows"):
            if key in kw and not (key in ("items", "rows") and kw[key] is None) and check_type(
                    kw[key], int, f"{where}.{key}") < 1:
                raise SpecError(f"{where}.{key} must be >= 1, got {kw[key]}")
        return cls(**kw)

    def to_value(self) -> dict:
        return {"ridge": self.ridge, "rounding": self.rounding, "damp": self.damp, "stages": self.stages,
                "batch": self.batch, "rows": self.rows, "items": self.items}


@dataclass(frozen=True)
class RangeTuning:
    """The knobs of :func:`tune_ranges` (recipe key ``range_tuning``)."""

    steps: int = 300
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    weight_rounding_lr: float = 0.0  # > 0: also learn the rounding of quantized weights, with this Adam lr
    drop_prob: float = 0.0  # QDrop: chance that an activation element skips its quantizer while tuning
    block_loss: float = 0.0  # weight of the block-output reconstruction term added to the logit KL
    scope: str = "model"  # "model": the logit KL of the whole model; "block": each block fits its own output in turn

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "RangeTuning":
        check_keys(d, {"steps", "lr", "batch_size", "seed", "weight_rounding_lr", "drop_prob", "block_loss", "scope"},
                   where)
        if d.get("scope", "model") not in SCOPES:
            raise SpecError(f"{where}.scope: {d['scope']!r} unknown; choose one of {list(SCOPES)}")
        if d.get("scope") == "block" and d.get("block_loss"):
            raise SpecError(f"{where}.block_loss: with scope \"block\" each block fits its own output already; "
                            f"drop block_loss (it weighs the block term of the whole-model loss)")
        for key, typ in (("steps", int), ("batch_size", int), ("seed", int), ("lr", (int, float)),
                         ("weight_rounding_lr", (int, float)), ("drop_prob", (int, float)),
                         ("block_loss", (int, float))):
            if key in d:
                check_type(d[key], typ, f"{where}.{key}")
        for key in ("steps", "batch_size", "lr"):
            if key in d and not d[key] > 0:
                raise SpecError(f"{where}.{key}: must be > 0, got {d[key]!r}")
        for key, off in (("weight_rounding_lr", "weights frozen"), ("block_loss", "logit KL only")):
            if not d.get(key, 0) >= 0:
                raise SpecError(f"{where}.{key}: must be >= 0 (0: {off}), got {d[key]!r}")
        if not 0 <= d.get("drop_prob", 0) < 1:
            raise SpecError(f"{where}.drop_prob: must be in [0, 1), got {d['drop_prob']!r}")
        return cls(**d)


@dataclass(frozen=True)
class Reparameterization:
    """Recipe knob ``"reparameterize": {"strength": 1.0, "min_ratio": 0.01}``."""

    strength: float = 1.0  # 1: equal channel ranges (RepQ-ViT); 0: only centre them
    min_ratio: float = 0.01  # r_c is kept >= min_ratio (a dead channel must not blow up gamma / r)

    @classmethod
    def from_value(cls, value, where: str) -> Optional["Reparameterization"]:
        value = switch_or_knobs(value, {"strength", "min_ratio"}, where)
        if value is None:
            return None
        for key in value:
            check_type(value[key], (int, float), f"{where}.{key}")
        knobs = cls(**{k: float(v) for k, v in value.items()})
        if not 0.0 <= knobs.strength <= 1.0:
            raise SpecError(f"{where}.strength must be in [0, 1], got {knobs.strength}")
        if not 0.0 < knobs.min_ratio <= 1.0:
            raise SpecError(f"{where}.min_ratio must be in (0, 1], got {knobs.min_ratio}")
        return knobs

    def to_value(self) -> dict:
        return {"strength": self.strength, "min_ratio": self.min_ratio}


__all__ = ["ErrorCorrection", "RangeTuning", "Reparameterization", "ROUNDINGS", "SCOPES"]
