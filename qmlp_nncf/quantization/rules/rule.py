"""Rules: match quantizer sites by role (and optionally by op-name regex), assign a spec or float.

Every rule whose roles are all present on a site applies, in order; each merges its partial
spec over the result so far (so a general rule and a specific one compose); ``float`` removes
the quantizer. Rules are data: ``{"match": ["token_mixing_input"], "spec": {"bits": 4}}``.

``scope`` (a regex, full match) selects by NNCF op name: the op the quantizer is attached to, or a
Linear/Conv that reads the quantized tensor (so ``.*linear_tokens.*`` reaches that Linear's input
quantizer, which NNCF hangs on the producing norm). ``quantizer_kind`` (``"weights"`` or
``"activations"``) restricts a rule to one kind of quantizer, e.g. for a scope that would hit both.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .roles import ROLES, Site
from .specs import QuantizerSpec, SpecError, check_keys, check_type

QUANTIZER_KINDS = ("weights", "activations")


@dataclass(frozen=True)
class Rule:
    match: frozenset  # roles that must all be present
    spec: dict = field(default_factory=dict)  # partial QuantizerSpec fields
    keep_float: bool = False
    scope: Optional[str] = None  # regex, full match on the op name or a Linear/Conv it feeds (NNCF's "{re}")
    quantizer_kind: Optional[str] = None  # "weights" | "activations": only that kind of quantizer
    where: str = "rule"  # where the rule came from, for error messages

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Rule":
        check_keys(d, {"match", "spec", "float", "scope", "quantizer_kind", "comment"}, where)
        match = d.get("match", [])
        if isinstance(match, str):
            match = [match]
        check_type(match, list, f"{where}.match")
        unknown = sorted(set(match) - set(ROLES))
        if unknown:
            raise SpecError(f"{where}.match: unknown role(s) {unknown}; valid roles: {list(ROLES)}")
        if not match and "scope" not in d:
            raise SpecError(f"{where}: a rule needs 'match' (roles) or 'scope' (op-name regex)")
        spec = check_type(d.get("spec", {}), dict, f"{where}.spec")
        QuantizerSpec().merged(spec, f"{where}.spec")  # validate now, not at quantization time
        keep_float = check_type(d.get("float", False), bool, f"{where}.float")
        scope = d.get("scope")
        if scope is not None:
            check_type(scope, str, f"{where}.scope")
            try:
                re.compile(scope)
            except re.error as e:
                raise SpecError(f"{where}.scope: invalid regex {scope!r}: {e}") from None
        kind = d.get("quantizer_kind")
        if kind not in (None, *QUANTIZER_KINDS):
            raise SpecError(f"{where}.quantizer_kind: {kind!r} unknown; choose one of {list(QUANTIZER_KINDS)}")
        return cls(frozenset(match), spec, keep_float, scope, kind, where)

    def matches(self, site: Site) -> bool:
        if not self.match <= site.roles:
            return False
        if self.quantizer_kind is not None and site.is_weight != (self.quantizer_kind == "weights"):
            return False
        return self.scope is None or any(re.fullmatch(self.scope, op) for op in (site.op, *site.consumers))


def resolve(site: Site, rules: Iterable[Rule], default: QuantizerSpec) -> tuple[QuantizerSpec, bool]:
    """The spec of ``site`` after all matching rules, and whether it stays in float."""
    spec, keep_float = default, False
    for rule in rules:
        if rule.matches(site):
            spec = spec.merged(rule.spec, rule.where)
            keep_float = keep_float or rule.keep_float
    return spec, keep_float


def rules_from_list(items: list, where: str) -> tuple[Rule, ...]:
    check_type(items, list, where)
    return tuple(Rule.from_dict(r, f"{where}[{i}]") for i, r in enumerate(items))
