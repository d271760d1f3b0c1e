"""Quantizer specs: what a quantizer is (bits, symmetric or asymmetric, per-channel, range estimator).

Small declarative objects, composed by rules and recipes (Brevitas style). ``from_dict`` reads the
JSON form used in ``recipes/*.json``: ``{"bits": 4, "symmetric": false, "per_channel": false,
"range": {"estimator": "percentile", "percentile": 99.9}}``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

ESTIMATORS = ("min_max", "mean_min_max", "percentile", "mse")


class SpecError(ValueError):
    """A spec, rule, recipe or config that is not valid; the message names the place."""


def check_keys(d: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(allowed)}")
    return d


def switch_or_knobs(value: Any, allowed: set[str], where: str) -> Optional[dict]:
    """A recipe step given as ``true`` / ``false`` / ``null`` or as an object of knobs: None when off, ``{}`` for
    ``true`` (the defaults), else the checked object."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    check_type(value, dict, where)
    return check_keys(value, allowed, where)


def check_type(value: Any, types: type | tuple, where: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SpecError(f"{where}: expected {getattr(types, '__name__', types)}, got a boolean")
    if not isinstance(value, types):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise SpecError(f"{where}: expected {names}, got {type(value).__name__} {value!r}")
    return value


@dataclass(frozen=True)
class RangeSpec:
    """How a quantizer's range is set from calibration data.

    ``min_max``: min/max over all items; ``mean_min_max``: mean of per-item min/max;
    ``percentile``: mean over items of the per-item percentile (``percentile`` in (50, 100]),
    applied to |x| for symmetric quantizers and to both tails for asymmetric ones;
    ``mse``: the min-max range shrunk by the factor that minimises the quantization error
    (per channel for weights; on a fixed-size sample of every calibration item for activations).
    """

    estimator: str = "min_max"
    percentile: Optional[float] = None

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise SpecError(f"range estimator {self.estimator!r} unknown; choose one of {list(ESTIMATORS)}")
        if self.estimator == "percentile":
            if self.percentile is None or not 50.0 < float(self.percentile) <= 100.0:
                raise SpecError(f"percentile estimator needs 'percentile' in (50, 100], got {self.percentile!r}")
        elif self.percentile is not None:
            raise SpecError(f"'percentile' only applies to the percentile estimator, not {self.estimator!r}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "range") -> "RangeSpec":
        check_keys(d, {"estimator", "percentile"}, where)
        check_type(d.get("estimator", "min_max"), str, f"{where}.estimator")
        if "percentile" in d:
            check_type(d["percentile"], (int, float), f"{where}.percentile")
        return cls(**d)


@dataclass(frozen=True)
class QuantizerSpec:
    """One quantizer: ``bits`` (4 or 8), ``symmetric`` (False = affine with a zero point),
    ``per_channel`` (weights only), the activation ``range`` estimator, and ``half_range``.

    ``half_range`` (weights only): NNCF's overflow fix, per quantizer. An 8-bit symmetric weight is rounded
    to 7 bits of levels and stored as int8 in [-64, 64], so that CPUs without VNNI (AVX2, AVX-512 without
    VNNI), whose int8 kernels add u8 x s8 products in pairs into 16-bit lanes, cannot saturate. It does
    nothing at 4 bits or on an affine spec (rules that change the bits keep composing).
    """

    bits: int = 8
    symmetric: bool = True
    per_channel: bool = False
    range: RangeSpec = field(default_factory=RangeSpec)
    half_range: bool = False

    def __post_init__(self):
        if self.bits not in (4, 8):
            raise SpecError(f"bits must be 4 or 8, got {self.bits!r}")

    @property
    def levels(self) -> int:
        return 2 ** self.bits

    @property
    def uses_half_range(self) -> bool:
        """``half_range`` where it applies: 8-bit symmetric."""
        return self.half_range and self.bits == 8 and self.symmetric

    def merged(self, overrides: dict, where: str = "spec") -> "QuantizerSpec":
        """A copy with the keys of a JSON object applied (partial specs compose)."""
        check_keys(overrides, {"bits", "symmetric", "per_channel", "range", "half_range"}, where)
        kw = {}
        if "bits" in overrides:
            kw["bits"] = check_type(overrides["bits"], int, f"{where}.bits")
        for key in ("symmetric", "per_channel", "half_range"):
            if key in overrides:
                kw[key] = check_type(overrides[key], bool, f"{where}.{key}")
        if "range" in overrides:
            kw["range"] = RangeSpec.from_dict(overrides["range"], f"{where}.range")
        try:
            return replace(self, **kw)
        except SpecError as e:
            raise SpecError(f"{where}: {e}") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["range"] = {k: v for k, v in d["range"].items() if v is not None}
        if not self.half_range:
            del d["half_range"]
        return d

    def __str__(self) -> str:
        rng = self.range.estimator + (f"({self.range.percentile})" if self.range.percentile else "")
        return (f"{'s' if self.symmetric else 'a'}{self.bits}"
                f"{'/ch' if self.per_channel else ''}{'/half' if self.uses_half_range else ''} {rng}")

