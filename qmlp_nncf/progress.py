"""Progress bars belong on a terminal. Written to a log (CI, ``make demo > log 2>&1``), a bar's carriage-return
frames pile up by the thousand; there the steps' own lines (the ones each step prints when it finishes) tell
the story. :func:`bar` is ``tqdm`` that draws only on a terminal; :func:`plain_nncf_bars` makes NNCF's rich bars
print one line per finished step when stdout is not a terminal, even where ``FORCE_COLOR`` / ``TTY_INTERACTIVE``
would have rich animate into the log."""
from __future__ import annotations

import sys
from typing import Iterable, Optional, TextIO


def on_terminal(stream: Optional[TextIO] = None) -> bool:
    """Whether ``stream`` (stderr by default) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def bar(iterable: Optional[Iterable] = None, *, disable: bool = False, file: Optional[TextIO] = None, **kwargs):
    """``tqdm(iterable, ...)`` on stderr (or ``file``) when it is a terminal; elsewhere a disabled bar, which
    still iterates, ``update``\\ s and ``set_postfix_str``\\ s (no output)."""
    from tqdm import tqdm

    file = file if file is not None else sys.stderr
    return tqdm(iterable, disable=disable or not on_terminal(file), file=file, **kwargs)


def log_line(msg: str) -> None:
    """One log line on stderr, flushed: the default ``log`` of the library's long-running calls (stdout stays for
    results)."""
    print(msg, file=sys.stderr, flush=True)


def plain_nncf_bars() -> None:
    """NNCF 3.x draws its bars (``nncf.common.logging.track_progress.track``: statistics collection, bias
    correction, ...) with rich on rich's global console, on stdout. When stdout is not a terminal (and this is not
    Jupyter, whose widgets rich draws differently), make that console a plain, non-interactive one: each bar then
    prints its final line once, when its step finishes, and no frames."""
    if on_terminal(sys.stdout):
        return
    import rich

    console = rich.get_console()
    if console.is_jupyter or (not console.is_terminal and not console.is_interactive):
        return  # Jupyter, or already plain (rich's own choice for a pipe without FORCE_COLOR)
    rich.reconfigure(force_terminal=False, force_interactive=False)


__all__ = ["on_terminal", "bar", "log_line", "plain_nncf_bars"]
