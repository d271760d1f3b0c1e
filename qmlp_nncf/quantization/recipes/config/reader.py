"""Reading a config file: JSON with NNCF 2.x's jstyleson extensions (comments, trailing commas), one
:class:`SpecError` per problem, and the key check every object of a config goes through."""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, Optional

from ...rules.specs import SpecError

MAX_CONFIG_BYTES = 16 * 2**20  # a config is a few KB; refuse anything this big before reading it


def read_config_file(path: Path) -> Any:
    """The parsed JSON of ``path``: comments and trailing commas allowed; any problem is one SpecError."""
    try:
        if not path.exists():
            raise SpecError(f"config file {path} does not exist")
        if not path.is_file():
            raise SpecError(f"config {path}: not a regular file")
        size = path.stat().st_size
    except OSError as e:
        raise SpecError(f"config {path}: cannot read it: {e.strerror or e}") from None
    too_big = f"config {path}: {{}} bytes is too large for a config (at most {MAX_CONFIG_BYTES} = 16 MB); " \
              f"is this the right file?"
    if size > MAX_CONFIG_BYTES:
        raise SpecError(too_big.format(size))
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise SpecError(f"config {path}: cannot read it: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SpecError(too_big.format(f"more than {MAX_CONFIG_BYTES}"))
    return parse_config_text(raw, f"config {path}")


def parse_config_text(raw: bytes | str, label: str = "config") -> Any:
    """JSON with NNCF 2.x's jstyleson extensions (``//`` and ``/* */`` comments, trailing commas)."""
    if isinstance(raw, bytes):
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise SpecError(f"{label}: UTF-16 text; save it as UTF-8")
        if b"\x00" in raw:
            raise SpecError(f"{label}: binary data (NUL bytes at offset {raw.index(0)}), not a JSON text file")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise SpecError(f"{label}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                            f"save it as UTF-8") from None
    else:
        text = raw
    if not text.strip():
        raise SpecError(f"{label}: empty file")
    try:
        try:
            return _json_loads(text)
        except json.JSONDecodeError as plain_error:
            stripped = strip_json_comments(text)
            if stripped == text:
                raise SpecError(f"{label}: invalid JSON: {plain_error}") from None
            try:
                return _json_loads(stripped)
            except json.JSONDecodeError as e:
                raise SpecError(f"{label}: invalid JSON (comments removed): {e}") from None
    except SpecError as e:
        raise SpecError(str(e) if str(e).startswith(label) else f"{label}: {e}") from None
    except RecursionError:
        raise SpecError(f"{label}: nested too deeply (arrays/objects inside each other beyond Python's "
                        f"recursion limit); a config is a few levels deep") from None
    except MemoryError:
        raise SpecError(f"{label}: out of memory while parsing it") from None
    except ValueError as e:  # e.g. an integer literal longer than Python's int digits limit
        raise SpecError(f"{label}: invalid JSON: {e}") from None


_STRING = r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
_COMMENT = re.compile(_STRING + r"|//[^\n]*|/\*.*?\*/|/\*", re.S)
_TRAILING_COMMA = re.compile(_STRING + r"|(?<=[^\s\[{,:])(\s*),(\s*[\]}])")  # a comma after a value


def strip_json_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments and trailing commas (before ``]`` / ``}``) blanked,
    outside strings only; lines and columns stay where they were (for JSON error positions)."""

    def comment(m: re.Match) -> str:
        s = m.group()
        if s[0] == '"':
            return s
        if s == "/*":
            raise SpecError(f"unterminated /* comment at line {text.count(chr(10), 0, m.start()) + 1}")
        return re.sub(r"[^\n]", " ", s)

    text = _COMMENT.sub(comment, text)
    return _TRAILING_COMMA.sub(lambda m: m.group() if m.group(1) is None else f"{m.group(1)} {m.group(2)}", text)


def _no_duplicates(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise SpecError(f"key {dup!r} appears twice in one object (JSON would keep only the last); give it once")
    return d


def _no_constant(name: str):
    raise SpecError(f"{name} is not a JSON number")


def _json_loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def kind_of(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a number ({value!r})" if isinstance(value, (int, float)) else type(value).__name__)


def check_config_keys(d: Any, used: set, where: str, ignored: list, *, ignorable: set = frozenset(),
                      unsupported: Optional[dict] = None) -> dict:
    """Check the keys of object ``d``: ``used`` ones are read, ``ignorable`` ones (NNCF 2.x keys that mean
    nothing here) are appended to ``ignored``, ``unsupported`` ones fail with their reason, others are
    unknown (a typo: the valid keys and the closest one are named)."""
    unsupported = unsupported or {}
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object, got {kind_of(d)}")
    prefix = "" if where == "config" else f"{where}."
    for key in d:
        if key in unsupported:
            raise SpecError(f"{prefix}{key}: {unsupported[key]}")
    unknown = sorted(str(k) for k in d if k not in used and k not in ignorable)
    if unknown:
        close = (difflib.get_close_matches(unknown[0], sorted(used), n=1, cutoff=0.7)  # the keys read here first
                 or difflib.get_close_matches(unknown[0], sorted(ignorable | set(unsupported)), n=1, cutoff=0.7))
        hint = f"; did you mean {close[0]!r}?" if close else ""
        others = " (and NNCF 2.x's own keys, accepted and ignored: see docs/config.md)" if ignorable else ""
        raise SpecError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(used)}{others}{hint}")
    ignored.extend(prefix + k for k in d if k in ignorable)
    return d
