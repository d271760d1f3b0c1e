"""Sensitivity sweeps on a :class:`~qmlp_nncf.quantization.algorithms.probe.Probe`: what one site, or one role group, costs
when only it is quantized (4 bit: symmetric vs affine, min-max vs percentile vs mse; and 8 bit), and what keeping
one group at 8 bit recovers when everything else is 4-bit. Bounded by ``max_minutes``; progress is logged."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..quantization.algorithms.probe import Probe, block_of, site_group
from ..quantization.rules.specs import QuantizerSpec, RangeSpec

SITE_ACT_VARIANTS = [QuantizerSpec(4, s, False, RangeSpec(*r)) for s in (True, False)
                     for r in (("min_max",), ("percentile", 99.99))]
GROUP_ACT_VARIANTS = [QuantizerSpec(4, s, False, RangeSpec(*r)) for s in (True, False)
                      for r in (("min_max",), ("percentile", 99.9), ("percentile", 99.99), ("mse",))]
WEIGHT_VARIANTS_4 = [QuantizerSpec(4, True, True, RangeSpec(e)) for e in ("min_max", "mse")]
ACT_8 = QuantizerSpec(8, False, False, RangeSpec("min_max"))
WEIGHT_8 = QuantizerSpec(8, True, True, RangeSpec("min_max"))


@dataclass
class Row:
    """One site or group: metrics per spec tried (``str(spec)`` -> Metrics dict), the best 4-bit spec."""

    name: str
    group: str
    block: Optional[int]
    is_weight: bool
    sites: list
    results: dict = field(default_factory=dict)
    best4: Optional[str] = None
    reverse: Optional[dict] = None  # groups: everything else 4-bit, this group 8-bit

    def best4_metrics(self) -> Optional[dict]:
        return self.results.get(self.best4) if self.best4 else None

    def eight_bit(self) -> Optional[dict]:
        return next((m for k, m in self.results.items() if k.startswith(("a8", "s8"))), None)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Sensitivity:
    sites: list  # Row per site, ranked by the best 4-bit KL (worst first)
    groups: list  # Row per role group, ranked the same way
    all4: Optional[dict]  # every site at its group's best 4-bit spec
    float_top1: Optional[float]
    evaluations: int
    seconds: float
    complete: bool

    def to_dict(self) -> dict:
        return {"sites": [r.to_dict() for r in self.sites], "groups": [r.to_dict() for r in self.groups],
                "all4": self.all4, "float_top1": self.float_top1, "evaluations": self.evaluations,
                "seconds": round(self.seconds, 1), "complete": self.complete}


class _Budget:
    def __init__(self, probe: Probe, total: int, max_minutes: float, log):
        self.probe, self.total, self.log = probe, total, log
        self.t0, self.deadline, self.done, self.next_log = time.time(), time.time() + 60 * max_minutes, 0, time.time()

    def evaluate(self, config) -> Optional[dict]:
        if time.time() > self.deadline:
            return None
        m = self.probe.evaluate(config).to_dict()
        self.done += 1
        now = time.time()
        if now >= self.next_log:
            rate = (now - self.t0) / self.done
            self.log(f"sensitivity: {self.done}/{self.total} evaluations, ~{rate * (self.total - self.done) / 60:.1f} "
                     f"min left")
            self.next_log = now + 30
        return m


def _rank(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: -(r.best4_metrics() or {"kl": -1})["kl"])


def _pick_best(row: Row) -> None:
    four = {k: m for k, m in row.results.items() if m is not None and k[1] == "4"}
    row.best4 = min(four, key=lambda k: four[k]["kl"]) if four else None


def sweep(probe: Probe, max_minutes: float = 20.0, per_site: bool = True,
          log: Callable[[str], None] = lambda m: None) -> Sensitivity:
    """Group sweeps (4-bit variants, 8-bit, and the reverse), then per-site sweeps, within ``max_minutes``."""
    t0, start = time.time(), probe.evaluations
    by_group: dict[str, list] = {}
    for s in probe.sites:
        by_group.setdefault(site_group(s), []).append(s)
    n_groups = sum(len(WEIGHT_VARIANTS_4 if g[0].is_weight else GROUP_ACT_VARIANTS) + 2 for g in by_group.values()) + 1
    n_sites = sum(len(WEIGHT_VARIANTS_4 if s.is_weight else SITE_ACT_VARIANTS) + 1 for s in probe.sites)
    budget = _Budget(probe, n_groups + (n_sites if per_site else 0), max_minutes, log)
    complete = True

    groups = []
    for name, sites in by_group.items():
        w = sites[0].is_weight
        row = Row(name, name, None, w, [s.hook_name for s in sites])
        for spec in (WEIGHT_VARIANTS_4 if w else GROUP_ACT_VARIANTS) + [WEIGHT_8 if w else ACT_8]:
            row.results[str(spec)] = m = budget.evaluate({s.hook_name: spec for s in sites})
            complete &= m is not None
        _pick_best(row)
        groups.append(row)

    def best_spec(row: Row) -> QuantizerSpec:
        cands = (WEIGHT_VARIANTS_4 if row.is_weight else GROUP_ACT_VARIANTS)
        return next((c for c in cands if str(c) == row.best4), cands[0])

    all4_config = {h: best_spec(r) for r in groups for h in r.sites}
    all4 = budget.evaluate(all4_config)
    complete &= all4 is not None
    for row in groups:
        eight = WEIGHT_8 if row.is_weight else ACT_8
        row.reverse = budget.evaluate({**all4_config, **{h: eight for h in row.sites}})
        complete &= row.reverse is not None

    sites = []
    if per_site:
        for s in probe.sites:
            row = Row(s.hook_name, site_group(s), block_of(s), s.is_weight, [s.hook_name])
            for spec in (WEIGHT_VARIANTS_4 if s.is_weight else SITE_ACT_VARIANTS) + [WEIGHT_8 if s.is_weight else ACT_8]:
                row.results[str(spec)] = m = budget.evaluate({s.hook_name: spec})
                complete &= m is not None
            _pick_best(row)
            sites.append(row)
    if not complete:
        log(f"sensitivity: stopped by max_minutes={max_minutes}; rows without numbers were not measured")
    return Sensitivity(_rank(sites), _rank(groups), all4, probe.float_top1, probe.evaluations - start,
                       time.time() - t0, complete)
