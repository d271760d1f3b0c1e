"""NNCF 2.x scope names -> NNCF 3 op names, scopes -> the regexes of rules, and ``ignored_scopes``."""
from __future__ import annotations

import re
from typing import Any, Optional

import nncf

from ...rules.specs import SpecError, check_type

INPUT_SCOPE = r"[^/.]+"  # the model's input node: NNCF 3 names it after forward()'s argument (x)
# NNCF 2.x traced Tensor operators under their dunder names; NNCF 3 records the torch function
DUNDER_OPS = {"__add__": "add", "__radd__": "add", "__iadd__": "add_", "__sub__": "sub", "__isub__": "sub_",
              "__mul__": "mul", "__rmul__": "mul", "__imul__": "mul_", "__truediv__": "div", "__itruediv__": "div_",
              "__matmul__": "matmul", "__neg__": "neg", "__pow__": "pow"}


_OLD_MODULE = re.compile(r"[^/\[\]]*\[([^/\[\]]+)\]")  # NNCFLinear[fc1] -> fc1
_OLD_OP = re.compile(r"([A-Za-z_]\w*)_(\d+)")  # linear_0 -> linear, 0 ; relu__0 -> relu_, 0


def translate_nncf2_scope(scope: str) -> Optional[str]:
    """An NNCF 2.x scope name -> the NNCF 3 op name; None when ``scope`` is not in NNCF 2.x's form.

    ``ResNet/Sequential[layer1]/Bottleneck[0]/NNCFConv2d[conv1]/conv2d_0`` -> ``layer1/0/conv1/conv2d/0``:
    the leading model class is dropped, each ``Type[name]`` gives ``name``, the op ``fn_N`` gives
    ``fn/N`` (Tensor operators by NNCF 3's names: ``__add__`` -> ``add``, ``__iadd__`` -> ``add_``).
    A model-level op keeps NNCF 3's leading slash (``ResNet/flatten_0`` -> ``/flatten/0``);
    ``/nncf_model_input_N`` stays as is (the caller maps the model input).
    """
    parts = scope.split("/")
    op = _OLD_OP.fullmatch(parts[-1])
    if len(parts) < 2 or op is None:
        return None
    modules = parts[1:-1] if "[" not in parts[0] else parts[:-1]
    names = []
    for part in modules:
        m = _OLD_MODULE.fullmatch(part)
        if m is None:
            return None
        names.append(m.group(1))
    fn, index = op.groups()
    if fn == "nncf_model_input":
        return f"/nncf_model_input_{index}"
    return "/".join(names) + f"/{DUNDER_OPS.get(fn, fn)}/{index}"


def scope_regex(scope: str, where: str) -> str:
    """``{re}REGEX`` -> REGEX (checked); an NNCF 2.x scope -> its NNCF 3 op name; a plain op name -> its
    escaped exact match."""
    if scope.startswith("{re}"):
        pattern = scope[len("{re}"):]
        try:
            re.compile(pattern)
        except re.error as e:
            raise SpecError(f"{where}: invalid regex {pattern!r}: {e}") from None
        return pattern
    name = translate_nncf2_scope(scope) or scope
    if name.startswith("/nncf_model_input_"):
        if name != "/nncf_model_input_0":
            raise SpecError(f"{where}: {scope!r}: models with one input only (nncf_model_input_0)")
        return INPUT_SCOPE
    return re.escape(name)


def ignored_scope(scopes: Any, validate: bool) -> nncf.IgnoredScope:
    scopes = [scopes] if isinstance(scopes, str) else check_type(scopes, list, "compression.ignored_scopes")
    names, patterns = [], []
    for i, scope in enumerate(scopes):
        where = f"compression.ignored_scopes[{i}]"
        check_type(scope, str, where)
        if scope.startswith("{re}"):
            patterns.append(scope_regex(scope, where))
            continue
        name = translate_nncf2_scope(scope) or scope
        if name.startswith("/nncf_model_input_"):
            raise SpecError(f"{where}: to keep the model input in float use compression.quantize_inputs: false")
        names.append(name)
    return nncf.IgnoredScope(names=names, patterns=patterns, validate=validate)
