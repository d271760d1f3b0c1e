"""Analysis helpers: activation-range statistics of float and Q-MLP models."""
from .ranges import linear_input_ranges, summarize

__all__ = ["linear_input_ranges", "summarize"]
