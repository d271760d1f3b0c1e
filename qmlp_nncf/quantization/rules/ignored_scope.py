"""Checks of op-name scopes against a model's graph (rules' ``scope`` regexes, NNCF's ignored scope), before
``nncf.quantize`` runs, so that the message names the entry and shows op names."""
from __future__ import annotations

import difflib
import re
from typing import Optional

import nncf

from .roles import GraphRoles
from .specs import SpecError


def _op_examples(names: list[str]) -> str:
    return ", ".join(n for n in names if "/" in n and "linear" in n)[:300]


def check_scopes(rules, roles: GraphRoles) -> None:
    """A rule with an op-name regex that matches no op is a configuration error."""
    names = [n.node_name for n in roles.graph.get_all_nodes()]
    for rule in rules:
        if rule.scope is not None and not any(re.fullmatch(rule.scope, n) for n in names):
            raise SpecError(f"{rule.where}.scope: regex {rule.scope!r} matches no op of this model; "
                            f"op names look like: {_op_examples(names)}")


def check_ignored_scope(ignored_scope: Optional[nncf.IgnoredScope], roles: GraphRoles) -> None:
    """An ignored name or pattern (NNCF semantics: ``re.match``) that matches no op is an error."""
    if ignored_scope is None or not ignored_scope.validate:
        return
    names = [n.node_name for n in roles.graph.get_all_nodes()]
    for name in ignored_scope.names:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"op names look like: {_op_examples(names)}"
            raise SpecError(f"ignored scope: op {name!r} is not in this model; {hint}")
    for pattern in ignored_scope.patterns:
        if not any(re.match(pattern, n) for n in names):
            raise SpecError(f"ignored scope: pattern {pattern!r} matches no op of this model "
                            f"(matched from the start of the name); op names look like: {_op_examples(names)}")
