"""Per-layer profile of OpenVINO IRs side by side, from the CPU plugin's performance counters.

Each IR is compiled with ``PERF_COUNT=YES`` and the same hints as ``ov_latency``; the IRs take turns (A, B, A,
B, ...) so that a noisy machine slows them alike, and every layer's time is the median over the rounds of its
mean ``real_time`` per request (``InferRequest.get_profiling_info``). Layers are also summed by
(layer type, exec type, runtime precision): the table that says where one IR spends the time the other does
not. The census (``census.py``) then counts, per IR, the element-wise / MVN / Concat / Transpose / Split layers
that run in float and in int8, with their share of the time: what a fusing placement changes, on any CPU.
"""
from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..census import census_of, markdown as census_markdown
from ..console import run_command, write_json
from .ov_latency import HINTS, BenchmarkError, compile_ir, ir_source, machine_info, resolve_devices


@dataclass
class ProfileConfig:
    device: str = "CPU"
    hint: str = "f32"
    batch: int = 1
    requests: int = 50  # per round, after warm-up
    rounds: int = 5  # the IRs alternate this many times
    warmup: int = 5
    top: int = 15

    def __post_init__(self):
        if self.hint not in HINTS:
            raise BenchmarkError(f"unknown precision hint {self.hint!r}; choose from {', '.join(HINTS)}")
        for name in ("batch", "requests", "rounds"):
            if getattr(self, name) < 1:
                raise BenchmarkError(f"--{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class LayerTime:
    name: str
    layer_type: str
    exec_type: str
    precision: str
    ms: float  # median over rounds of the mean time per request

    @property
    def kind(self) -> tuple[str, str, str]:
        return self.layer_type, self.exec_type, self.precision


@dataclass
class Profile:
    ir: str
    label: str
    total_ms: float  # sum of the layers' times (per request)
    wall_ms: list = field(default_factory=list)  # per round: median request wall time
    layers: list = field(default_factory=list)

    def by_kind(self) -> dict[tuple[str, str, str], tuple[int, float]]:
        out: dict = defaultdict(lambda: [0, 0.0])
        for layer in self.layers:
            out[layer.kind][0] += 1
            out[layer.kind][1] += layer.ms
        return {k: (n, ms) for k, (n, ms) in out.items()}

    def census(self) -> dict:
        """Float and int8 element-wise / MVN / Concat / Transpose / Split layers: counts and time shares."""
        return census_of((t.layer_type, t.precision, t.ms) for t in self.layers)

    def to_dict(self) -> dict:
        return {"ir": self.ir, "label": self.label, "total_ms": round(self.total_ms, 4), "wall_ms": self.wall_ms,
                "census": self.census(),
                "by_kind": [{"layer_type": k[0], "exec_type": k[1], "precision": k[2], "layers": n,
                             "ms": round(ms, 4)} for k, (n, ms) in sorted(self.by_kind().items(),
                                                                        key=lambda kv: -kv[1][1])],
                "layers": [asdict(layer) for layer in sorted(self.layers, key=lambda t: -t.ms)]}


def _runtime_precisions(compiled) -> dict[str, str]:
    out = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info:
            out[op.get_friendly_name()] = info["runtimePrecision"].astype(str)
    return out


def _round(request, n: int) -> tuple[dict[str, float], float, dict[str, tuple[str, str]]]:
    """``n`` requests: per layer the mean real time (ms), the median wall time, and (type, exec type)."""
    import time

    sums: dict[str, float] = defaultdict(float)
    kinds: dict[str, tuple[str, str]] = {}
    walls = []
    for _ in range(n):
        t = time.perf_counter()
        request.infer()
        walls.append(1e3 * (time.perf_counter() - t))
        for info in request.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            sums[info.node_name] += info.real_time.total_seconds() * 1e3
            kinds[info.node_name] = (info.node_type, info.exec_type)
    return {k: v / n for k, v in sums.items()}, statistics.median(walls), kinds


def profile(irs: list[str | Path], cfg: ProfileConfig, labels: Optional[list[str]] = None,
            log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> dict:
    """Profile every IR (alternating, ``cfg.rounds`` rounds); returns ``{"machine", "config", "profiles"}``."""
    import openvino as ov

    if not irs:
        raise BenchmarkError("nothing to profile: give --ir PATH (twice to compare two IRs)")
    sources = [ir_source(p) for p in irs]
    labels = labels or [f"{s.model}/{s.recipe}" for s in sources]
    if len(labels) != len(sources):
        raise BenchmarkError(f"{len(labels)} labels for {len(sources)} IRs: give one --label per --ir")
    core = ov.Core()
    resolve_devices([cfg.device], core.available_devices)
    machine = machine_info()
    compiled = [compile_ir(core, s, cfg.device, cfg.hint, "latency", cfg.batch, {"PERF_COUNT": "YES"})
                for s in sources]
    requests = []
    for c in compiled:
        r = c.create_infer_request()
        x = np.random.default_rng(0).standard_normal(tuple(c.inputs[0].shape)).astype(np.float32)
        r.set_input_tensor(ov.Tensor(x))
        for _ in range(cfg.warmup):
            r.infer()
        requests.append(r)
    per_round: list[list[dict]] = [[] for _ in sources]
    walls: list[list[float]] = [[] for _ in sources]
    kinds: list[dict] = [{} for _ in sources]
    for i in range(cfg.rounds):
        for j, r in enumerate(requests):
            times, wall, k = _round(r, cfg.requests)
            per_round[j].append(times)
            walls[j].append(round(wall, 4))
            kinds[j].update(k)
        log(f"profile round {i + 1}/{cfg.rounds}: " + ", ".join(f"{lab} {w[-1]:.2f} ms"
                                                                  for lab, w in zip(labels, walls)))
    profiles = []
    for j, src in enumerate(sources):
        precision = _runtime_precisions(compiled[j])
        layers = [LayerTime(name, *kinds[j][name], precision.get(name, "?"),
                            statistics.median(rt.get(name, 0.0) for rt in per_round[j]))
                  for name in kinds[j]]
        profiles.append(Profile(str(src.xml), labels[j], sum(t.ms for t in layers), walls[j], layers))
    return {"machine": machine, "config": asdict(cfg), "profiles": profiles}


def markdown(result: dict, top: Optional[int] = None) -> str:
    """Time by (layer type, exec type, precision) for every IR side by side, then each IR's top layers."""
    profiles: list[Profile] = result["profiles"]
    top = top or result["config"]["top"]
    kinds = sorted({k for p in profiles for k in p.by_kind()},
                   key=lambda k: -max(p.by_kind().get(k, (0, 0.0))[1] for p in profiles))
    head = " | ".join(f"{p.label} ms (n)" for p in profiles)
    lines = [f"| layer type | exec type | precision | {head} |" + (" Δ ms |" if len(profiles) == 2 else ""),
             "|---|---|---|" + "---:|" * len(profiles) + ("---:|" if len(profiles) == 2 else "")]
    for k in kinds:
        cells = [p.by_kind().get(k, (0, 0.0)) for p in profiles]
        row = f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(f"{ms:.3f} ({n})" for n, ms in cells) + " |"
        if len(profiles) == 2:
            row += f" {cells[1][1] - cells[0][1]:+.3f} |"
        lines.append(row)
    lines.append("| **sum of layers** | | | " + " | ".join(f"**{p.total_ms:.3f}**" for p in profiles) + " |"
                 + (f" **{profiles[1].total_ms - profiles[0].total_ms:+.3f}** |" if len(profiles) == 2 else ""))
    lines.append("| request wall time (median of rounds) | | | "
                 + " | ".join(f"{statistics.median(p.wall_ms):.3f} ({min(p.wall_ms):.2f}-{max(p.wall_ms):.2f})"
                              for p in profiles) + " |" + (" |" if len(profiles) == 2 else ""))
    lines += ["", "Census (layers that run in float vs int8; time share of the sum of layers):", "",
              census_markdown([(p.label, p.census()) for p in profiles])]
    for p in profiles:
        lines += ["", f"Top {top} layers of {p.label} ({p.ir}):", "",
                  "| layer | type | exec type | precision | ms |", "|---|---|---|---|---:|"]
        for t in sorted(p.layers, key=lambda t: -t.ms)[:top]:
            lines.append(f"| {t.name[:70]} | {t.layer_type} | {t.exec_type} | {t.precision} | {t.ms:.3f} |")
    c, m = result["config"], result["machine"]
    lines += ["", f"{c['device']}, INFERENCE_PRECISION_HINT={c['hint']}, batch {c['batch']}, {c['rounds']} "
                  f"alternating rounds of {c['requests']} requests; {m['cpu']}, load {m['loadavg_1m_at_start']} at "
                  f"start, OpenVINO {m['openvino']}."]
    return "\n".join(lines)


def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="benchmarks/ov_profile.py", description=__doc__.splitlines()[0])
    p.add_argument("--ir", action="append", default=[], metavar="PATH", help="an IR (model.xml or its folder)")
    p.add_argument("--label", action="append", default=[], metavar="NAME", help="one per --ir (default: its "
                                                                                "model/recipe metadata)")
    p.add_argument("--device", default="CPU")
    p.add_argument("--hint", default="f32", choices=HINTS)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--requests", type=int, default=ProfileConfig.requests, help="requests per round")
    p.add_argument("--rounds", type=int, default=ProfileConfig.rounds, help="alternating rounds")
    p.add_argument("--top", type=int, default=ProfileConfig.top, help="slowest layers listed per IR")
    p.add_argument("--json", metavar="PATH", help="write the profiles as JSON (atomically)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("ov_profile", lambda: _run(args))


def _run(args) -> int:
    cfg = ProfileConfig(args.device, args.hint, args.batch, args.requests, args.rounds, top=args.top)
    result = profile(args.ir, cfg, args.label or None)
    print(markdown(result))
    if args.json:
        write_json(args.json, {**result, "profiles": [p.to_dict() for p in result["profiles"]]})
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
