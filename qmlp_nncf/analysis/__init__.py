"""Why a model is hard to quantize: per-site range statistics, sensitivity sweeps, figures, a report, and the
recipe that follows from them (``qmlp analyze``; :func:`analyze` returns an :class:`Analysis`)."""
from .analyze import Analysis, analyze
from .ranges import linear_input_ranges, summarize

__all__ = ["analyze", "Analysis", "linear_input_ranges", "summarize"]
