"""A probe: one NNCF model whose every quantizer site can be switched, at run time, to any spec or off.

``nncf.quantize`` places the quantizers (NNCF's placement, no bias correction, so with every site off the
probe computes the float model exactly); each quantizer is then replaced by a :class:`SiteSwitch` that
holds standard NNCF quantizers built by ``postpass.torch_backend.build_quantizer`` from the project's own range estimators
(the same math as ``qmlp quantize``), one per spec asked for, and applies the active one. One calibration
pass collects :class:`SiteStats` at every site; any spec's range is then derived from them without
another pass. What the sensitivity analysis and ``recipe="auto:..."`` measure is what the post-pass would
install.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import nncf
import torch
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import BaseQuantizer
from torch import nn

from ..recipes.nncf_settings import nncf_kwargs
from ..recipes.recipe import NNCFSettings, Recipe
from ..rules.calibration import MSE_SAMPLE, estimator_rule, quantile_from_top, reduce_range
from ..rules.roles import GraphRoles, Site
from ..rules.specs import QuantizerSpec, RangeSpec
from .postpass.parameters import limits
from .postpass.torch_quantizers import (build_quantizer, quantizer_high, quantizer_low, quantizer_sites, run_batches,
                                        site_weight)

PERCENTILES = (99.0, 99.9, 99.99)  # the percentiles the statistics keep (and percentile specs may use)
GEMM_INPUT_ROLES = ("token_mixing_input", "channel_mixing_input", "spatial_gating_input")
EDGE_INPUT_ROLES = ("classifier_input", "patch_embedding_input")
BLOCK_WEIGHT_ROLES = ("token_mixing", "channel_mixing", "spatial_gating")


def block_of(site: Site) -> Optional[int]:
    """The block index in the op name (``blocks/3/...``, timm's ``blocks.3``), else None."""
    m = re.search(r"blocks[./_](\d+)", site.op)
    return int(m.group(1)) if m else None


def site_group(site: Site) -> str:
    """The role group of a site: ``weights:<op role>`` or the sorted activation roles joined by ``+``."""
    if site.is_weight:
        return "weights:" + "+".join(sorted(site.roles - {"weights"}))
    return "+".join(sorted(site.roles)) or "other"


def is_gemm_input(site: Site) -> bool:
    """A tensor read by a Linear inside the blocks (what "a4" quantizes to 4 bit)."""
    return not site.is_weight and any(r in site.roles for r in GEMM_INPUT_ROLES) and bool(site.consumers)


def is_block_weight(site: Site) -> bool:
    return site.is_weight and any(r in site.roles for r in BLOCK_WEIGHT_ROLES)


def quantized_by_transformer_placement(site: Site) -> bool:
    """Weights and Linear/Conv inputs: the sites NNCF's TRANSFORMER placement (and ONNX Runtime's static
    quantization) quantizes."""
    if site.is_weight:
        return "norm" not in site.roles  # a LayerNorm's gamma is quantized by the default placement only
    return bool(site.consumers)


# ---------------------------------------------------------------- statistics
class SiteStats:
    """Everything the range estimators and the report need of one tensor, over the calibration items:
    per-item min / max and tail percentiles (of x and of |x|), the fraction of negative values, the
    per-channel max |x| and a fixed-size random sample per item (the ``mse`` estimator's, and the
    histograms'). ``range(spec)`` equals what ``calibration.RangeCollector(spec)`` gives on the same items
    (``calibration.reduce_range`` of the statistics the estimator rule names)."""

    def __init__(self, percentiles: Iterable[float] = PERCENTILES):
        self.percentiles = tuple(sorted(percentiles))
        self.mins: list[float] = []
        self.maxs: list[float] = []
        self.q_abs = {p: [] for p in self.percentiles}
        self.q_hi = {p: [] for p in self.percentiles}
        self.q_lo = {p: [] for p in self.percentiles}
        self.negative = 0
        self.count = 0
        self.channel_max: Optional[torch.Tensor] = None
        self.samples: list[torch.Tensor] = []
        self._generator = torch.Generator().manual_seed(0)  # the same draws as RangeCollector's

    def observe(self, x: torch.Tensor) -> None:
        x = x.detach()
        v = x.reshape(x.shape[0], -1).double()
        n = v.shape[1]
        self.mins += v.amin(dim=1).tolist()
        self.maxs += v.amax(dim=1).tolist()
        k = n - int((n - 1) * (self.percentiles[0] / 100.0))
        tops = {"abs": torch.topk(v.abs(), k, dim=1).values, "hi": torch.topk(v, k, dim=1).values,
                "lo": torch.topk(-v, k, dim=1).values}
        for p in self.percentiles:
            q = p / 100.0
            self.q_abs[p] += quantile_from_top(tops["abs"], n, q).tolist()
            self.q_hi[p] += quantile_from_top(tops["hi"], n, q).tolist()
            self.q_lo[p] += (-quantile_from_top(tops["lo"], n, q)).tolist()
        self.negative += int((v < 0).sum())
        self.count += v.numel()
        dim = 1 if x.dim() == 4 else x.dim() - 1  # NCHW channels, else the features the Linear contracts
        cmax = x.abs().float().transpose(0, dim).reshape(x.shape[dim], -1).amax(dim=1)
        self.channel_max = cmax if self.channel_max is None else torch.maximum(self.channel_max, cmax)
        for row in v:
            pick = torch.randint(row.numel(), (min(row.numel(), MSE_SAMPLE),), generator=self._generator)
            self.samples.append(row[pick].float())  # float32 inputs: lossless

    def range(self, spec: QuantizerSpec) -> tuple[float, float]:
        rule = estimator_rule(spec.range)
        if rule.quantile:
            p = float(spec.range.percentile)
            if p not in self.q_abs:
                raise ValueError(f"percentile {p} was not collected; collected: {list(self.percentiles)}")
            lows, highs = ([], self.q_abs[p]) if spec.symmetric else (self.q_lo[p], self.q_hi[p])
        else:  # per-item extremes
            lows, highs = self.mins, self.maxs
        samples = [s.double() for s in self.samples] if rule.shrink else []
        return reduce_range(spec, lows, highs, min(self.mins), samples)

    def sample(self) -> torch.Tensor:
        return torch.cat(self.samples)

    def summary(self) -> dict:
        """min, max, mean per-item percentiles of |x|, max / p99.99, fraction negative, channel spread."""
        mx = max(abs(min(self.mins)), abs(max(self.maxs)))
        d = {"min": min(self.mins), "max": max(self.maxs)}
        for p in self.percentiles:
            d[f"p{p:g}"] = sum(self.q_abs[p]) / len(self.q_abs[p])
        top = d.get("p99.99") or d[f"p{self.percentiles[-1]:g}"]
        d["max_to_p99.99"] = mx / top if top > 0 else math.inf
        d["frac_negative"] = self.negative / max(self.count, 1)
        med = float(self.channel_max.double().quantile(0.5)) if self.channel_max is not None else 0.0
        d["channel_spread"] = float(self.channel_max.max()) / med if med > 0 else math.inf
        return d


# ---------------------------------------------------------------- the switchable model
class SiteSwitch(nn.Module):
    """Sits in one NNCF hook slot: observes (``stats``), or applies the active quantizer, or passes through."""

    def __init__(self):
        super().__init__()
        self.quantizers = nn.ModuleDict()
        self.active: Optional[str] = None
        self.stats: Optional[SiteStats] = None

    def forward(self, x):
        if self.stats is not None:
            self.stats.observe(x)
        return self.quantizers[self.active](x) if self.active is not None else x


@dataclass
class Metrics:
    """A quantized configuration against the float model on the probe's evaluation items."""

    kl: float  # mean KL(float || quantized) of the softmax, nats
    sqnr_db: float  # output (logit) SQNR
    agreement: float  # fraction of items whose top-1 class matches the float model's
    top1: Optional[float]  # with labels
    top1_delta_pt: Optional[float]  # top-1 minus the float top-1, in points

    def to_dict(self) -> dict:
        # an exact output has infinite SQNR: None keeps the JSON strict
        return {k: ((round(v, 6) if math.isfinite(v) else None) if isinstance(v, float) else v)
                for k, v in self.__dict__.items()}


def _key(spec: QuantizerSpec) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", f"{spec.bits}_{spec.symmetric}_{spec.per_channel}_{spec.range.estimator}_"
                                       f"{spec.range.percentile}")


class Probe:
    """``model`` (float, eval) with switchable quantizer sites, calibrated on ``calibration`` (batch-1 tensors)
    and evaluated on ``eval_items`` (tensors; ``labels`` optional), against the float model."""

    def __init__(self, model: nn.Module, calibration: list[torch.Tensor], eval_items: list[torch.Tensor],
                 labels: Optional[torch.Tensor] = None, placement: str = "default",
                 log: Callable[[str], None] = lambda m: None, batch_size: int = 128):
        t0 = time.time()
        self.model_float = model.eval()
        self.roles = GraphRoles(nncf.build_graph(model, example_input=calibration[0]))
        recipe = Recipe("probe", nncf=NNCFSettings(model_type=placement, fast_bias_correction=False))
        self.model = nncf.quantize(model, nncf.Dataset(calibration[:8]), subset_size=min(8, len(calibration)),
                                   **nncf_kwargs(recipe, None)).eval()
        self.sites: list[Site] = quantizer_sites(self.model, self.roles)
        storage = get_hook_storage(self.model)
        self.switches: dict[str, SiteSwitch] = {}
        for site in self.sites:
            switch = SiteSwitch()
            storage.delete_hook(site.hook_name)
            storage.insert_hook_by_name(site.hook_name, switch)
            self.switches[site.hook_name] = switch
        leftover = [n for n, h in storage.named_hooks() if isinstance(h, BaseQuantizer)]
        assert not leftover, leftover
        self.stats: dict[str, SiteStats] = {}
        self.calibration_items = len(calibration)
        self._collect(calibration)
        self.batch_size = batch_size
        self.eval_x = torch.cat(eval_items)
        self.labels = labels
        self.evaluations = 0
        with torch.no_grad():
            self.float_logits = self._forward()
        self.float_top1 = (None if labels is None else
                           float((self.float_logits.argmax(1) == labels).float().mean()))
        self.setup_seconds = time.time() - t0
        log(f"probe: {len(self.sites)} quantizer sites, {len(calibration)} calibration and {len(eval_items)} "
            f"evaluation items, set up in {self.setup_seconds:.1f} s")

    @torch.no_grad()
    def _collect(self, calibration: list[torch.Tensor]) -> None:
        for site in self.sites:
            if not site.is_weight:
                self.switches[site.hook_name].stats = self.stats[site.hook_name] = SiteStats()
        try:
            run_batches(self.model, calibration)
        finally:
            for s in self.switches.values():
                s.stats = None

    def site(self, hook_name: str) -> Site:
        return next(s for s in self.sites if s.hook_name == hook_name)

    # ------------------------------------------------------------ quantizers
    def range(self, site: Site, spec: QuantizerSpec) -> tuple[list, list]:
        """The installed range of ``spec`` at ``site`` (per channel for per-channel weights)."""
        q = self._quantizer(site, spec)
        if site.is_weight:
            return [], []
        return [float(quantizer_low(q))], [float(quantizer_high(q))]

    def _quantizer(self, site: Site, spec: QuantizerSpec) -> BaseQuantizer:
        switch, key = self.switches[site.hook_name], _key(spec)
        if key not in switch.quantizers:
            if site.is_weight:
                spec, shape, low, high = limits(spec, weight=site_weight(self.model, self.roles, site))
            else:
                spec, shape, low, high = limits(spec, calibrated=self.stats[site.hook_name].range(spec))
            switch.quantizers[key] = build_quantizer(spec, shape, low, high, site.is_weight).eval()
        return switch.quantizers[key]

    def set(self, config: dict[str, QuantizerSpec]) -> None:
        """Quantize exactly the sites in ``config`` (hook name -> spec); every other site passes through."""
        for name, switch in self.switches.items():
            spec = config.get(name)
            if spec is None:
                switch.active = None
            else:
                self._quantizer(self.site(name), spec)
                switch.active = _key(spec)

    # ------------------------------------------------------------ evaluation
    def _forward(self) -> torch.Tensor:
        return torch.cat([self.model(self.eval_x[i:i + self.batch_size])
                          for i in range(0, len(self.eval_x), self.batch_size)])

    @torch.no_grad()
    def evaluate(self, config: dict[str, QuantizerSpec]) -> Metrics:
        self.set(config)
        try:
            logits = self._forward()
        finally:
            self.set({})
        self.evaluations += 1
        return compare(self.float_logits, logits, self.labels)


def compare(reference: torch.Tensor, logits: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Metrics:
    """KL, output SQNR, top-1 agreement (and top-1 with labels) of ``logits`` against ``reference``."""
    ref, out = reference.double(), logits.double()
    kl = torch.nn.functional.kl_div(out.log_softmax(1), ref.log_softmax(1), log_target=True,
                                    reduction="batchmean")
    noise = (ref - out).pow(2).sum()
    sqnr = float(10 * torch.log10(ref.pow(2).sum() / noise)) if noise > 0 else math.inf
    agreement = float((ref.argmax(1) == out.argmax(1)).double().mean())
    top1 = delta = None
    if labels is not None:
        top1 = float((out.argmax(1) == labels).double().mean())
        delta = 100 * (top1 - float((ref.argmax(1) == labels).double().mean()))
    return Metrics(float(kl), sqnr, agreement, top1, delta)


def activation_variants(bits: int, percentiles: Iterable[float] = PERCENTILES) -> list[QuantizerSpec]:
    """Per-tensor activation specs: symmetric and affine, with min-max, each percentile, and mse ranges."""
    ranges = ([RangeSpec("min_max")] + [RangeSpec("percentile", p) for p in percentiles] + [RangeSpec("mse")])
    return [QuantizerSpec(bits, symmetric, False, r) for symmetric in (True, False) for r in ranges]


def weight_variants(bits: int) -> list[QuantizerSpec]:
    """Per-channel symmetric weight specs with min-max and mse ranges."""
    return [QuantizerSpec(bits, True, True, RangeSpec(e)) for e in ("min_max", "mse")]
