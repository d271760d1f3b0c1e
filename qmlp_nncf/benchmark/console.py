"""Console output of the benchmarks: tables on stdout, everything else (NNCF's progress) on stderr."""
from __future__ import annotations

import contextlib
import logging
import sys


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
