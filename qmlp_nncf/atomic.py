"""Atomic writes: a file or a folder is built next to its target under a temporary name and renamed into place,
so a crash never leaves a half-written one behind and a reader sees the old version or the new one.

A leaf module (the standard library only): checkpoints, the zoo index, recipes, reports and IR folders all
write through it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` writes the content to a temporary file next to ``path``, which then replaces ``path``
    (parent folders are made); on failure the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp makes it private; the file should read like any other
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path`` holds ``text``, written atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | Path, data: Any, indent: int = 2, **dumps_kwargs) -> Path:
    """``path`` holds ``data`` as JSON (and a final newline), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent, **dumps_kwargs) + "\n")


@contextlib.contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Build a folder atomically: yields a temporary folder next to ``target``; when the block succeeds it
    replaces ``target`` (an existing one is moved aside, then dropped), when it fails it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the folder should read like any other
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(old / "x")
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
