"""The backend interface of the post-pass (NNCF's ``min_max/backend.py`` style): what :mod:`.algorithm` asks of
a quantized model, implemented over torch hooks (``torch_backend``) and over FakeQuantize nodes
(``openvino_backend``)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch

from ...rules.calibration import RangeCollector
from ...rules.placement import PlacementPlan
from ...rules.roles import GraphRoles, Site
from ...rules.specs import QuantizerSpec
from .parameters import Decision


class PostPassBackend(ABC):
    """One backend's model operations. ``roles``: the float model's graph roles (sites are named on it; None for
    weight compression, which visits no sites)."""

    MODEL = "{family} model"  # what the log calls a quantized model

    def __init__(self, roles: Optional[GraphRoles] = None):
        self.roles = roles

    @classmethod
    @abstractmethod
    def prepare(cls, model, recipe):
        """``model`` checked for ``recipe`` (a float model of this backend that the recipe can run on), as it is to be
        quantized; a model that cannot be is one clear error."""

    @classmethod
    @abstractmethod
    def bind(cls, model, items: list[torch.Tensor], roles: bool = True) -> tuple["PostPassBackend", str, Optional[bool]]:
        """This backend for the float ``model``: ``(backend with the model's graph roles (None without ``roles``),
        family, whether it has Q-MLP blocks (None where the backend cannot tell))``."""

    @abstractmethod
    def copy(self, model):
        """A copy of the float ``model`` (``nncf.compress_weights`` works in place)."""

    @abstractmethod
    def inputs(self, items: list[torch.Tensor]) -> list:
        """The calibration items (batch-1 tensors) as the backend's model inputs."""

    def nncf_kwargs(self, kwargs: dict) -> dict:
        """``nncf.quantize``'s keyword arguments (``nncf_settings.nncf_kwargs``) as this backend's NNCF takes them."""
        return kwargs

    @abstractmethod
    def sites(self, model) -> list[Site]:
        """The quantizer sites of the quantized ``model``, in the order they are visited (called first)."""

    @abstractmethod
    def apply_placement(self, model, plan: PlacementPlan, placeholder: QuantizerSpec) -> list[tuple[str, ...]]:
        """Remove and insert the plan's quantizers (placeholders, specified and calibrated afterwards); returns
        the plan's shared-range groups as site names."""

    @abstractmethod
    def collect(self, model, decisions: list[Decision], items: list[torch.Tensor]) -> dict[str, RangeCollector]:
        """A range collector per activation decision (by site name), fed with the float values at its site (every
        quantizer bypassed) over ``items``."""

    @abstractmethod
    def bypass(self, model, site: Site) -> None:
        """Remove the quantizer of ``site`` (the tensor stays float)."""

    @abstractmethod
    def set_bits(self, model, site: Site, bits: int) -> None:
        """Change only the bit width of the quantizer NNCF placed (the stock-NNCF baselines)."""

    @abstractmethod
    def weight(self, model, site: Site) -> torch.Tensor:
        """The float weight a weight site quantizes, output channels on axis 0."""

    @abstractmethod
    def install(self, model, decision: Decision, shape: tuple, low: torch.Tensor, high: torch.Tensor) -> None:
        """Replace the quantizer of ``decision.site`` by one of ``decision.spec`` over ``[low, high]`` (scale
        ``shape``)."""

    @abstractmethod
    def finish(self, model, decisions: list[Decision], recalibrate: bool) -> None:
        """After every site is done: record what the report needs."""

    def finalize(self, model) -> None:
        """The quantized model as it is handed out, after every step (OpenVINO: weights compressed)."""

    def align_grids(self, quantized, decisions: list[Decision]) -> int:
        """Make the quantized model compute what its exported IR computes (torch: ``zero_grid``), and record the
        ranges that moved; how many quantizers changed. Nothing to do where the model already is the IR."""
        return 0

    def tune_ranges(self, quantized, model, items: list[torch.Tensor], recipe, decisions: list[Decision], log):
        """Range tuning (torch autograd); the recipe checks keep it from other backends."""
        raise NotImplementedError(f"{type(self).__name__} has no range tuning")

    def reparameterize(self, model, items: list[torch.Tensor], knobs) -> tuple[object, dict]:
        """The float ``model`` with its norm outputs equalised per channel (``reparam``), and what was folded."""
        raise NotImplementedError(f"{type(self).__name__} has no reparameterization")

    def correct_weights(self, quantized, model, items: list[torch.Tensor], knobs, log,
                        keep_float: tuple = ()) -> dict:
        """Weight error correction of ``quantized`` against the float ``model`` (``error_correction``)."""
        raise NotImplementedError(f"{type(self).__name__} has no weight error correction")
