"""The application side of the ``qmlp`` command, the benchmark scripts and the demo: :func:`setup_process` (the one
place that changes anything process-wide), the result on stdout, everything else (NNCF's progress) on stderr, JSON
files written atomically, and a user's mistake as one line with exit code 2.

The library never calls :func:`setup_process`: importing or calling it changes nothing global. A library user who
quantizes with hundreds of calibration items may opt in to the heap bound with ``setup_process()`` or
:func:`bound_heap_growth` alone."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from .atomic import write_json_atomic

USAGE_EXIT = 2  # argparse's code for bad arguments; a bad input file, data source or name is the same kind of mistake
MISSING_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


@contextlib.contextmanager
def nncf_output_to_stderr():
    """NNCF writes its progress bars and log lines to stdout; keep stdout for the table."""
    from nncf.common.logging import nncf_logger

    handlers = [h for h in nncf_logger.handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.stream for h in handlers]
    for h in handlers:  # not setStream: it flushes the old stream, which may be closed (a finished capture)
        h.stream = sys.stderr
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h, stream in zip(handlers, streams):
            h.stream = sys.stderr if getattr(stream, "closed", False) else stream


def write_json(path: str | Path, result) -> None:
    """A benchmark's JSON result, written atomically (``atomic.write_json_atomic``)."""
    write_json_atomic(path, result, indent=1)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean bad input (the message says what to change), not a bug: ``ValueError`` (``SpecError``,
    ``BenchmarkError``, ``ExportError``...), ``KeyError`` (an unknown name), ``DataError``, ``CheckpointError`` and a
    path that does not exist or is the wrong kind."""
    from .checkpoint import CheckpointError
    from .data import DataError

    return (ValueError, KeyError, DataError, CheckpointError, *MISSING_PATH_ERRORS)


def error_line(error: BaseException) -> str:
    """The message of a user error on one line."""
    if isinstance(error, KeyError) and error.args:
        msg = str(error.args[0])
    elif isinstance(error, MISSING_PATH_ERRORS) and error.filename:
        what = {FileNotFoundError: "does not exist", NotADirectoryError: "is not a folder",
                IsADirectoryError: "is a folder, not a file", PermissionError: "cannot be read or written (permission)"}
        msg = f"{error.filename} {what[type(error)]}"
    else:
        msg = str(error) or type(error).__name__
    return " ".join(msg.split())


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_harmless_warnings() -> None:
    """Drop the log lines a CPU user cannot act on: torch's "No CUDA runtime is found, using CUDA_HOME=..." (logged
    when NNCF imports ``torch.utils.cpp_extension`` on a machine with a CUDA toolkit but no GPU)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _DropMessages) for f in logger.filters):
        logger.addFilter(_DropMessages("No CUDA runtime is found"))


def bound_heap_growth() -> None:
    """Stop glibc from raising its mmap threshold (default 128 KiB, raised dynamically after large frees).

    Otherwise activation buffers land on the heap, NNCF's small per-item mean statistics (MEAN_MINMAX
    ranges, fast bias correction) sit between them, the freed buffers cannot be reused, and peak RSS grows
    by about one forward pass per calibration item (~60 MB per item on mixer_b16_224: 300 items need
    ~20 GB). With a fixed threshold big buffers go to mmap and are returned at once; the quantized model
    is bit-identical. Process-wide and permanent, so an application's choice (:func:`setup_process`), never the
    library's; a no-op where libc has no ``mallopt`` (non-glibc)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def setup_process(*, heap: bool = True) -> None:
    """Set up an application's process, once, before it imports NNCF: quiet torch's CUDA-toolkit warning, make
    NNCF's rich bars print one line per finished step when stdout is a log (``progress.plain_nncf_bars``), and,
    with ``heap``, bound the heap's growth during calibration (:func:`bound_heap_growth`). Idempotent."""
    from .progress import plain_nncf_bars

    quiet_harmless_warnings()
    plain_nncf_bars()
    if heap:
        bound_heap_growth()


def run_command(prog: str, body: Callable[[], int], json_errors: bool = False) -> int:
    """``body()``'s exit code; a user error (see :func:`user_errors`) becomes one line, ``{prog}: error: ...`` on
    stderr (``{"error": ...}`` on stdout with ``json_errors``), and exit code 2 instead of a traceback.
    ``QMLP_DEBUG=1`` lets the traceback through, for bug reports. Sets up the process first (:func:`setup_process`)."""
    setup_process()
    try:
        return body()
    except user_errors() as e:
        if os.environ.get("QMLP_DEBUG"):
            raise
        if json_errors:
            print(json.dumps({"error": error_line(e)}), flush=True)
        else:
            print(f"{prog}: error: {error_line(e)}", file=sys.stderr, flush=True)
        return USAGE_EXIT
