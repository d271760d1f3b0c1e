"""OpenVINO latency/throughput benchmark of float, int8 and int4 IRs, with a runtime precision census.

Every IR runs on every requested device and precision hint in two modes: ``latency`` (batch 1,
synchronous requests, ``PERFORMANCE_HINT=LATENCY``) and ``throughput`` (batch N, ``AsyncInferQueue``
with OpenVINO's optimal number of requests, ``PERFORMANCE_HINT=THROUGHPUT``). Speedups are against
the f32-hint float IR of the same model, device, batch and mode, measured in the same run (the
CPU runs "FP32" IRs in bf16 by default, so ``f32`` is always measured for float IRs).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .census import INT8
from .console import nncf_output_to_stderr

DEVICES = ("CPU", "GPU", "AUTO")
HINTS = ("f32", "bf16")
GEMM_TYPES = ("FullyConnected", "MatMul")  # the int8_share / i4_share count these
CENSUS_TYPES = GEMM_TYPES + ("Convolution",)
INT8_PRECISIONS = tuple(sorted(INT8))  # int8 GEMM kernels
INT4_PRECISIONS = ("i4", "u4")  # 4-bit weights through the weight-decompression kernels
FP32 = "fp32"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


class BenchmarkError(ValueError):
    """Bad input (path, device, model, recipe); the message says what to change."""


@dataclass
class BenchConfig:
    """What to measure and for how long (per measurement)."""
    devices: list[str] = field(default_factory=list)  # empty: every present device among DEVICES
    hints: list[str] = field(default_factory=lambda: list(HINTS))
    batch: int = 16  # throughput-mode batch
    duration_s: float = 10.0  # per measurement, after warm-up
    iterations: int = 0  # > 0: fixed request count instead of duration
    warmup: int = 3  # requests (per infer request in throughput mode)
    calibration_size: int = 64  # for recipes built on the fly (speed only)
    quick: bool = False
    data: dict = field(default_factory=dict)  # sources.DataSource.to_json() to calibrate on; {}: see random_calibration
    random_calibration: bool = False  # calibrate on random images (speed only); else --data, or Fashion-MNIST
    model_kwargs: dict = field(default_factory=dict)  # timm kwargs for every --model
    # how the 4-bit weights of W4A8/W4A4 IRs built on the fly run (export.openvino_ir.W4_KERNELS); each is a row
    w4_kernels: list[str] = field(default_factory=lambda: ["int8"])
    repeats: int = 1  # every measurement this many times, the IRs taking turns; rows give the median and range
    versus: str = ""  # a recipe: speedup_vs_ref = this row against that recipe's row of the same model (per repeat)
    cross_check: bool = False  # also run OpenVINO's benchmark_app on every measurement, right after ours

    def __post_init__(self):
        if self.quick:
            self.duration_s, self.warmup, self.calibration_size = min(self.duration_s, 0.5), 1, 8
        bad = [h for h in self.hints if h not in HINTS]
        if bad:
            raise BenchmarkError(f"unknown precision hint(s) {bad}; choose from {', '.join(HINTS)}")
        if self.batch < 1:
            raise BenchmarkError(f"--batch must be >= 1, got {self.batch}")
        if self.repeats < 1:
            raise BenchmarkError(f"--repeats must be >= 1, got {self.repeats}")
        from ..export.openvino_ir import W4_KERNELS

        bad = [k for k in self.w4_kernels if k not in W4_KERNELS] or ([] if self.w4_kernels else ["(none)"])
        if bad:
            raise BenchmarkError(f"unknown --w4-kernels {bad}; choose from {', '.join(W4_KERNELS)}")


@dataclass
class IRSource:
    """One IR to benchmark, with the model/recipe it came from."""
    xml: Path
    model: str
    recipe: str
    note: str = ""


# ---------------------------------------------------------------- machine and devices
def machine_info() -> dict:
    """CPU model, ISA flags relevant to int8/bf16, cores, load, OpenVINO version and devices."""
    import openvino as ov

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model_name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                       if line.startswith("model name")), "unknown")
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                      if line.startswith("flags")), []))
    core = ov.Core()
    return {
        "cpu": model_name,
        "flags": {f: f in flags for f in CPU_FLAGS},
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "openvino": ov.get_version(),
        "devices": {d: core.get_property(d, "FULL_DEVICE_NAME") for d in core.available_devices},
    }


def _present(device: str, available: list[str]) -> bool:
    if device.startswith("AUTO") or device.startswith("MULTI"):
        return bool(available)
    return any(a == device or a.split(".")[0] == device for a in available)


GPU_HELP = ("An Intel GPU needs its OpenVINO driver (intel-opencl-icd / Level Zero) and must appear in "
            "`python -c \"import openvino as ov; print(ov.Core().available_devices)\"`; on this machine use --device CPU")


def resolve_devices(requested: list[str], available: list[str]) -> tuple[list[str], list[str]]:
    """(devices to use, notes). Every device asked for by name must be present: a run that silently measured
    another device (or none) would report numbers for hardware the user did not ask about."""
    absent = [d for d in requested if not _present(d, available)]
    if absent:
        gpu = " " + GPU_HELP if any(d.split(".")[0] == "GPU" for d in absent) else ""
        raise BenchmarkError(f"device {', '.join(absent)} is not present: OpenVINO sees "
                             f"{', '.join(available) or 'no device'}.{gpu}")
    use = requested or [d for d in DEVICES if _present(d, available)]
    if not use:
        raise BenchmarkError("OpenVINO sees no device")
    return use, []


def int8_supported(core, device: str) -> bool:
    """Whether the device lists INT8 in ``OPTIMIZATION_CAPABILITIES`` (AUTO: its CPU). Intel iGPUs do from
    Gen12 (Xe) on with DP4A; without it OpenVINO runs an int8 IR's FakeQuantize in f16."""
    target = "CPU" if device.startswith("AUTO") else device
    try:
        return "INT8" in core.get_property(target, "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


def hint_supported(core, device: str, hint: str) -> bool:
    """f32 everywhere; bf16 only where the device lists BF16 (AUTO: its CPU)."""
    if hint == "f32":
        return True
    target = "CPU" if device.startswith("AUTO") else device
    try:
        caps = core.get_property(target, "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False
    return hint.upper() in caps


# ---------------------------------------------------------------- measurement
def precision_census(compiled) -> dict:
    """Runtime precision of every FullyConnected/MatMul/Convolution in the executed graph.

    ``census`` counts the ``runtimePrecision`` the CPU plugin reports per layer type (``u8``/``i8`` for int8
    activations or int8-compressed weights, ``i4``/``u4`` for 4-bit weights). What the GEMM computes in is the
    suffix of its ``primitiveType`` (``jit_gemm_I8``, ``brgemm_avx2_f32``): ``int8_share`` is the share of GEMMs
    that compute in int8; ``i4_share`` the share that run 4-bit weights through the weight-decompression kernels;
    ``float_compute_share`` the share that compute in a float type (weight-only compression included)."""
    counts: Counter = Counter()
    compute: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else None
        if layer in CENSUS_TYPES:
            prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "unknown"
            counts[(layer, prec)] += 1
            if layer in GEMM_TYPES:
                kernel = info["primitiveType"].astype(str) if "primitiveType" in info else ""
                suffix = kernel.rsplit("_", 1)[-1].lower()
                compute["int8" if suffix in INT8_PRECISIONS or (not kernel and prec in INT8_PRECISIONS)
                        else "i4" if prec in INT4_PRECISIONS else "float"] += 1
    census: dict[str, dict[str, int]] = {}
    for (layer, prec), n in sorted(counts.items()):
        census.setdefault(layer, {})[prec] = n
    gemms = sum(compute.values())

    def share(kind: str) -> Optional[float]:
        return compute[kind] / gemms if gemms else None

    return {"census": census, "gemm_ops": gemms, "int8_share": share("int8"), "i4_share": share("i4"),
            "float_compute_share": share("float")}


def _stats(latencies_ms: list[float], images: int, wall_s: float) -> dict:
    lat = sorted(latencies_ms)
    return {"latency_median_ms": statistics.median(lat), "latency_p90_ms": float(np.percentile(lat, 90)),
            "latency_min_ms": lat[0], "latency_max_ms": lat[-1], "fps": images / wall_s,
            "requests": len(lat), "wall_s": wall_s}


def _done(start: float, count: int, cfg: BenchConfig) -> bool:
    return count >= cfg.iterations if cfg.iterations else time.perf_counter() - start >= cfg.duration_s


def measure_latency(compiled, cfg: BenchConfig) -> dict:
    """Batch-1 synchronous requests, one at a time."""
    import openvino as ov

    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal(tuple(compiled.inputs[0].shape)).astype(np.float32)
    request.set_input_tensor(ov.Tensor(x))
    for _ in range(cfg.warmup):
        request.infer()
    latencies, start = [], time.perf_counter()
    while not latencies or not _done(start, len(latencies), cfg):
        t = time.perf_counter()
        request.infer()
        latencies.append(1e3 * (time.perf_counter() - t))
    return _stats(latencies, len(latencies) * x.shape[0], time.perf_counter() - start)


MIN_ROUNDS = 4  # throughput mode: requests per infer request, at the least


def measure_throughput(compiled, cfg: BenchConfig) -> dict:
    """Batch-N requests kept in flight by an ``AsyncInferQueue`` of OpenVINO's optimal size."""
    import openvino as ov

    jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, jobs)
    x = np.random.default_rng(0).standard_normal(tuple(compiled.inputs[0].shape)).astype(np.float32)
    for request in queue:
        request.set_input_tensor(ov.Tensor(x))
    for _ in range(cfg.warmup * jobs):
        queue.start_async()
    queue.wait_all()
    # no Python callback: one that is still running while the queue is torn down can deadlock OpenVINO;
    # a request's latency is read in this thread when it is about to be reused, and after wait_all
    latencies: list[float] = []
    used = [False] * jobs
    started, start = 0, time.perf_counter()
    # at least MIN_ROUNDS requests per slot: with a window of a few requests, the last ones' drain after the
    # deadline dominates the wall time (measured: 3-s windows of batch-16 224-px requests read 18-25 % under
    # benchmark_app; 15-s windows agreed within 3.5 %)
    least = 1 if cfg.iterations else MIN_ROUNDS * jobs
    while started < least or not _done(start, started, cfg):
        i = queue.get_idle_request_id()  # blocks while every request is busy; start_async takes this one
        if used[i]:
            latencies.append(queue[i].latency)
        queue.start_async()
        used[i] = True
        started += 1
    queue.wait_all()
    latencies += [queue[i].latency for i in range(jobs) if used[i]]
    return {**_stats(latencies, len(latencies) * x.shape[0], time.perf_counter() - start), "infer_requests": jobs}


# ---------------------------------------------------------------- sources
def ir_source(path: str | Path) -> IRSource:
    """An IR given on the command line; model and recipe from its qmlp_nncf metadata when present."""
    from ..export import load_ir, read_metadata

    path = Path(path)
    xml = path / "model.xml" if path.is_dir() else path
    meta = read_metadata(load_ir(xml))
    return IRSource(xml, meta.get("model", xml.parent.name if xml.stem == "model" else xml.stem),
                    meta.get("recipe", "unknown"), note=f"IR {xml}")


def build_sources(models: list[str], recipes: list[str], workdir: Path, cfg: BenchConfig,
                  log: Callable[[str], None]) -> list[IRSource]:
    """Prepare, quantize and export every model x recipe (plus fp32, plus the base model of a qmlp_*)."""
    from ..export import export_ir
    from ..export.openvino_ir import W4_KERNELS
    from ..data import DataError
    from ..export.prepare import check_recipe, prepare
    from ..sources import DataSource, ModelSource

    data = DataSource.from_json(cfg.data) if cfg.data else DataSource()
    for r in recipes:
        check_recipe(r)
    names = list(dict.fromkeys(m for name in models
                               for m in ([name.removeprefix("qmlp_")] if name.startswith("qmlp_") else []) + [name]))
    sources = []
    for name in names:
        wanted = [FP32] if name not in models else list(dict.fromkeys([FP32, *recipes]))
        for recipe in wanted:
            t = time.perf_counter()
            log(f"preparing {name} / {recipe} ...")
            source = ModelSource(name, model_kwargs=cfg.model_kwargs)
            try:
                prepared = prepare(source, recipe, data, cfg.calibration_size, cfg.random_calibration)
            except (ValueError, DataError) as e:
                if cfg.data or cfg.random_calibration:
                    raise
                # the default data (Fashion-MNIST, 28 px gray) does not fit the model: the fix is other data, not
                # the data error's own hint (e.g. --convert-channels), which suits a model made for that data
                raise BenchmarkError(f"{name} / {recipe}: the default calibration data (Fashion-MNIST) does not fit "
                                     f"this model ({str(e).split(':')[0]}); pass --data <ImageFolder root> (its "
                                     f"train split calibrates), or --random-calibration for a speed-only run") from None
            calibration = prepared.metadata.get("calibration")
            note = "exported on the fly" + (f", calibration {calibration}" if calibration else "")
            for kernels in cfg.w4_kernels:
                result = export_ir(prepared.model, workdir / f"{name}.{recipe}.{kernels}", (1, *prepared.input_shape),
                                   dynamic_batch=True, metadata=prepared.metadata, w4_kernels=kernels)
                static_w4 = result.metadata.get("w4_kernels") in W4_KERNELS
                label = f"{recipe}@{kernels}" if static_w4 and len(cfg.w4_kernels) > 1 else recipe
                sources.append(IRSource(result.xml, name, label, note=note))
                if not static_w4:
                    break  # no 4-bit GEMM weights with static activations: one IR says it all
            log(f"  {name} / {recipe}: IR ready in {time.perf_counter() - t:.0f} s")
    return sources


# ---------------------------------------------------------------- the run
def plan(sources: list[IRSource], devices: list[str], cfg: BenchConfig, core) -> tuple[list[tuple], list[str]]:
    """(source, device, hint, mode, batch) for every measurement, and notes on skipped hints."""
    items, notes = [], []
    for src in sources:
        for device in devices:
            hints = list(dict.fromkeys(cfg.hints + (["f32"] if src.recipe == FP32 else [])))
            for hint in hints:
                if not hint_supported(core, device, hint):
                    notes.append(f"hint {hint} skipped on {device}: the device does not support it")
                    continue
                items += [(src, device, hint, "latency", 1), (src, device, hint, "throughput", cfg.batch)]
    return items, list(dict.fromkeys(notes))


def _compile(core, src: IRSource, device: str, hint: str, mode: str, batch: int, extra: Optional[dict] = None):
    """The IR reshaped to ``batch`` and compiled with the mode's performance hint, the precision hint and
    ``extra`` properties (e.g. ``PERF_COUNT``)."""
    from ..export import load_ir

    model = load_ir(src.xml)
    shape = model.inputs[0].get_partial_shape()
    try:
        model.reshape([batch, *[d.get_length() for d in list(shape)[1:]]])
    except RuntimeError as e:
        raise BenchmarkError(f"{src.xml} cannot be reshaped to batch {batch} ({str(e).splitlines()[0]}); "
                             f"export it with --dynamic-batch") from e
    return core.compile_model(model, device, {"PERFORMANCE_HINT": mode.upper(), "INFERENCE_PRECISION_HINT": hint,
                                              **(extra or {})})


def add_speedups(rows: list[dict], versus: str = "") -> None:
    """``speedup_vs_fp32`` (and ``speedup_vs_base_fp32`` for qmlp_* models) from this run's f32 float rows,
    ``speedup_vs_fp32_bf16`` against the float IR under the bf16 hint (what OpenVINO runs a float IR in by default
    on CPUs with BF16: the comparison users make there), and ``speedup_vs_ref`` against the ``versus`` recipe's row. A ratio is the median of the per-repeat ratios (each
    repeat measures the two IRs back to back), with their range in ``*_range``."""
    def key(r, model=None, recipe=None, hint=None):
        return model or r["model"], recipe or r["recipe"], hint or r["hint"], r["device"], r["mode"], r["batch"]

    by = {key(r): r for r in rows}
    sizes = {r["model"]: r["ir_mb"] for r in rows if r["recipe"] == FP32}
    for r in rows:
        _set_ratio(r, "speedup_vs_fp32", by.get(key(r, recipe=FP32, hint="f32")))
        _set_ratio(r, "speedup_vs_fp32_bf16", by.get(key(r, recipe=FP32, hint="bf16")))
        r["size_vs_fp32"] = round(r["ir_mb"] / sizes[r["model"]], 3) if r["model"] in sizes else None
        if r["model"].startswith("qmlp_"):
            _set_ratio(r, "speedup_vs_base_fp32", by.get(key(r, model=r["model"].removeprefix("qmlp_"), recipe=FP32,
                                                             hint="f32")))
        if versus:
            _set_ratio(r, "speedup_vs_ref", by.get(key(r, recipe=versus)))
            r["ref_recipe"] = versus


def _set_ratio(row: dict, name: str, ref: Optional[dict]) -> None:
    row[name] = row[name + "_range"] = None
    if ref is None:
        return
    field_, higher = ("latency_median_ms", False) if row["mode"] == "latency" else ("fps", True)
    mine, theirs = row["runs"][field_], ref["runs"][field_]
    ratios = [(m / t if higher else t / m) for m, t in zip(mine, theirs)]
    row[name] = round(statistics.median(ratios), 3)
    row[name + "_range"] = [round(min(ratios), 3), round(max(ratios), 3)]


def run(sources: list[IRSource], cfg: BenchConfig, progress: bool = True,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
        machine: Optional[dict] = None) -> dict:
    """Measure every source; returns ``{"machine", "config", "notes", "rows", "failures"}``.

    Every model is compiled once; then ``cfg.repeats`` rounds measure each in turn (so that a noisy machine
    slows them alike), and a row holds the median of its rounds (``runs`` keeps each round's numbers).
    A measurement whose model fails to compile is listed in ``failures`` (and ``notes``), not raised."""
    import openvino as ov
    from tqdm import tqdm

    core = ov.Core()
    machine = machine or machine_info()
    devices, notes = resolve_devices(cfg.devices, core.available_devices)
    notes += [f"{d} does not list INT8 in OPTIMIZATION_CAPABILITIES: its int8 IRs run FakeQuantize in float"
              for d in devices if not int8_supported(core, d)]
    items, hint_notes = plan(sources, devices, cfg, core)
    notes += hint_notes + [f"{s.model} / {s.recipe}: {s.note}" for s in sources if "random" in s.note]
    load, cpus = machine["loadavg_1m_at_start"], machine["usable_cpus"]
    if load > 0.5 * cpus:
        notes.append(f"the machine was busy at start (load {load:.1f} on {cpus} CPUs): absolute numbers are "
                     f"pessimistic and noisy; ratios measured side by side are more reliable")
    for n in notes:
        log(f"note: {n}")
    failures, compiled = [], []
    for src, device, hint, mode, batch in items:
        try:
            compiled.append(((src, device, hint, mode, batch), _compile(core, src, device, hint, mode, batch)))
        except RuntimeError as e:  # an IR the device refuses is a finding: record it, measure the rest
            failures.append({"model": src.model, "recipe": src.recipe, "device": device, "hint": hint,
                             "mode": mode, "batch": batch, "error": _error_summary(e)})
            notes.append(f"{src.model} / {src.recipe} on {device} ({hint}, {mode}, b{batch}) failed to compile: "
                         f"{failures[-1]['error']}")
            log(f"note: {notes[-1]}")
    runs: list[list[dict]] = [[] for _ in compiled]
    bar = tqdm(total=len(compiled) * cfg.repeats, desc="benchmark", unit="run", disable=not progress,
               file=sys.stderr)
    checks: list[list[dict]] = [[] for _ in compiled]
    for _ in range(cfg.repeats):
        for i, ((src, device, hint, mode, batch), model) in enumerate(compiled):
            bar.set_postfix_str(f"{src.model}/{src.recipe} {device} {hint} {mode} b{batch}")
            runs[i].append(measure_latency(model, cfg) if mode == "latency" else measure_throughput(model, cfg))
            if cfg.cross_check:
                checks[i].append(benchmark_app(src.xml, device, hint, mode, batch, cfg.duration_s))
            bar.update()
    bar.close()
    rows = []
    for ((src, device, hint, mode, batch), model), stats, check in zip(compiled, runs, checks):
        census = precision_census(model)
        median = {k: statistics.median(s[k] for s in stats) for k in stats[0]}
        rows.append({"model": src.model, "recipe": src.recipe, "device": device, "hint": hint, "mode": mode,
                     "batch": batch, **{k: _round(v) for k, v in median.items()},
                     "runs": {k: [_round(s[k]) for s in stats] for k in ("latency_median_ms", "fps")},
                     "int8_share": _round(census["int8_share"]), "i4_share": _round(census["i4_share"]),
                     "gemm_ops": census["gemm_ops"], "census": census["census"],
                     "execution_devices": _exec_devices(model),
                     "ir_mb": round(src.xml.with_suffix(".bin").stat().st_size / 2**20, 2), "source": src.note})
        if check:
            rows[-1]["benchmark_app"] = _agreement(rows[-1], check)
    del compiled
    add_speedups(rows, cfg.versus)
    return {"machine": machine, "config": asdict(cfg), "notes": notes, "rows": rows, "failures": failures}


def benchmark_app(xml: Path, device: str, hint: str, mode: str, batch: int, duration_s: float) -> dict:
    """OpenVINO's ``benchmark_app`` on the same IR, device, hints and batch: its median latency and throughput
    (its own JSON report, ``-json_stats``)."""
    import json
    import math
    import shutil
    import subprocess

    from ..export import load_ir

    exe = shutil.which("benchmark_app")
    if exe is None:
        raise BenchmarkError("benchmark_app is not on PATH; it ships with the openvino wheel (pip install openvino)")
    dims = [d.get_length() for d in list(load_ir(xml).inputs[0].get_partial_shape())[1:]]
    with tempfile.TemporaryDirectory(prefix="qmlp-benchmark-app-") as tmp:
        cmd = [exe, "-m", str(xml), "-d", device, "-hint", mode, "-infer_precision", hint,
               "-shape", f"[{','.join(map(str, [batch, *dims]))}]", "-t", str(max(1, math.ceil(duration_s))),
               "-json_stats", "-report_type", "no_counters", "-report_folder", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600 + 10 * duration_s)
        report = Path(tmp) / "benchmark_report.json"
        if done.returncode != 0 or not report.is_file():
            raise BenchmarkError(f"benchmark_app failed on {xml} (exit {done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        results = json.loads(report.read_text())["execution_results"]
    return {"latency_median_ms": float(results["latency (ms)"]), "fps": float(results["throughput"]),
            "command": " ".join(cmd[:-2])}


def _agreement(row: dict, checks: list[dict]) -> dict:
    """benchmark_app's numbers beside ours: medians over the repeats and ours / theirs (1.0 = agree)."""
    theirs = {k: statistics.median(c[k] for c in checks) for k in ("latency_median_ms", "fps")}
    return {**{k: _round(v) for k, v in theirs.items()},
            "fps_ratio": round(row["fps"] / theirs["fps"], 3),
            "latency_ratio": round(row["latency_median_ms"] / theirs["latency_median_ms"], 3),
            "runs": {k: [c[k] for c in checks] for k in ("latency_median_ms", "fps")},
            "command": checks[0]["command"]}


def _error_summary(error: Exception, limit: int = 300) -> str:
    """An OpenVINO error without its source-location lines: what failed, then the final reason."""
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip() and not line.strip().startswith("Exception from")]
    if not lines:
        return type(error).__name__
    head = lines[0] if len(lines[0]) <= limit else lines[0][:limit] + "..."
    return head if len(lines) == 1 else f"{head} ... {lines[-1][:limit]}"


def _round(v):
    return round(v, 4) if isinstance(v, float) else v


def _exec_devices(compiled) -> list[str]:
    try:
        return list(compiled.get_property("EXECUTION_DEVICES"))
    except RuntimeError:
        return []


# ---------------------------------------------------------------- report
def markdown(result: dict) -> str:
    """One line per model x recipe x device x hint: b1 latency, bN throughput, int8 share, speedups against the f32
    float IR, the bf16 float IR (where it was measured) and the ``versus`` recipe (median of the repeats, with their
    range when there are several)."""
    rows = result["rows"]
    versus = result["config"].get("versus") or ""
    keys = list(dict.fromkeys((r["model"], r["recipe"], r["device"], r["hint"]) for r in rows))
    by = {(r["model"], r["recipe"], r["device"], r["hint"], r["mode"]): r for r in rows}
    batch = next((r["batch"] for r in rows if r["mode"] == "throughput"), "N")
    vs_head = f" vs {versus} b1 | vs {versus} b{batch} |" if versus else ""
    bf16 = any(r.get("speedup_vs_fp32_bf16") is not None for r in rows)
    bf16_head = f" vs fp32@bf16 b1 | vs fp32@bf16 b{batch} |" if bf16 else ""
    lines = [f"| model | recipe | device | hint | b1 latency ms (p90) | b{batch} img/s | int8 share | "
             f"GEMM runtime precisions | speedup b1 | speedup b{batch} |{bf16_head}{vs_head} IR MB (vs fp32) |",
             "|---|---|---|---|---:|---:|---:|---|---:|---:|" + ("---:|---:|" if bf16 else "")
             + ("---:|---:|" if versus else "") + "---:|"]
    for key in keys:
        lat, thr = by.get((*key, "latency")), by.get((*key, "throughput"))
        any_row = lat or thr
        share = any_row["int8_share"]
        size = f"{any_row['ir_mb']:.1f}" + (f" ({any_row['size_vs_fp32']:.2f}x)" if any_row["size_vs_fp32"] else "")
        vs = [_ratio_cell(lat, "speedup_vs_fp32_bf16"), _ratio_cell(thr, "speedup_vs_fp32_bf16")] if bf16 else []
        vs += [_ratio_cell(lat, "speedup_vs_ref"), _ratio_cell(thr, "speedup_vs_ref")] if versus else []
        lines.append("| " + " | ".join([
            *key,
            f"{lat['latency_median_ms']:.2f} ({lat['latency_p90_ms']:.2f})" if lat else "-",
            f"{thr['fps']:.1f}" if thr else "-",
            f"{share:.0%}" if share is not None else "-",
            _gemm_precisions(any_row["census"]),
            _speedup_cell(lat), _speedup_cell(thr), *vs, size]) + " |")
    m = result["machine"]
    flags = ", ".join(f for f, on in m["flags"].items() if on) or "none"
    repeats = result["config"].get("repeats", 1)
    lines += ["", f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({flags}), load {m['loadavg_1m_at_start']} "
                  f"at start, OpenVINO {m['openvino']}."
              + (f" {repeats} alternating repeats per measurement: median [min-max of the per-repeat ratio]."
                 if repeats > 1 else "")]
    lines += [f"Note: {n}" for n in result["notes"]]
    checked = [r for r in rows if "benchmark_app" in r]
    if checked:
        lines += ["", "Cross-check with OpenVINO's benchmark_app (same IR, device, hints, batch; median of the repeats):",
                  "", "| model | recipe | hint | mode | batch | ours | benchmark_app | ours / benchmark_app |",
                  "|---|---|---|---|---:|---:|---:|---:|"]
        for r in checked:
            b = r["benchmark_app"]
            if r["mode"] == "latency":
                ours, theirs, ratio, unit = r["latency_median_ms"], b["latency_median_ms"], b["latency_ratio"], "ms"
            else:
                ours, theirs, ratio, unit = r["fps"], b["fps"], b["fps_ratio"], "img/s"
            flag = " **(>10 %)**" if abs(ratio - 1) > 0.10 else ""
            lines.append(f"| {r['model']} | {r['recipe']} | {r['hint']} | {r['mode']} | {r['batch']} | "
                         f"{ours:.2f} {unit} | {theirs:.2f} {unit} | {ratio:.3f}{flag} |")
    return "\n".join(lines)


def _gemm_precisions(census: dict) -> str:
    counts: Counter = Counter()
    for layer in GEMM_TYPES:
        counts.update(census.get(layer, {}))
    return " ".join(f"{p}:{n}" for p, n in counts.most_common())


def _ratio_cell(row: Optional[dict], name: str) -> str:
    if row is None or row.get(name) is None:
        return "-"
    spread = row.get(name + "_range")
    cell = f"{row[name]:.2f}x"
    if spread and len(row["runs"]["fps"]) > 1:
        cell += f" [{spread[0]:.2f}-{spread[1]:.2f}]"
    return cell


def _speedup_cell(row: Optional[dict]) -> str:
    cell = _ratio_cell(row, "speedup_vs_fp32")
    if cell != "-" and row.get("speedup_vs_base_fp32") is not None:
        cell += f" ({row['speedup_vs_base_fp32']:.2f}x vs base)"
    return cell


def benchmark(irs: list[str], models: list[str], recipes: list[str], cfg: BenchConfig, progress: bool = True,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> dict:
    """IRs from paths, plus models x recipes built into a temporary folder, then :func:`run`."""
    if not irs and not models:
        raise BenchmarkError("nothing to benchmark: give --ir PATH and/or --model NAME")
    if recipes and not models:
        raise BenchmarkError("--recipe applies to --model; an --ir is benchmarked as it is")
    sources = [ir_source(p) for p in irs]
    if cfg.versus and cfg.versus not in recipes + [s.recipe for s in sources]:
        raise BenchmarkError(f"--vs {cfg.versus}: no --recipe or --ir of that recipe is benchmarked; add "
                             f"--recipe {cfg.versus}")
    import openvino as ov

    resolve_devices(cfg.devices, ov.Core().available_devices)  # before the slow part
    machine = machine_info()  # before quantizing on the fly, whose own load is not the machine's
    with tempfile.TemporaryDirectory(prefix="qmlp-ov-latency-") as tmp:
        sources += build_sources(models, recipes, Path(tmp), cfg, log)
        return run(sources, cfg, progress, log, machine)


# ---------------------------------------------------------------- command line
def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="benchmarks/ov_latency.py", description=__doc__.splitlines()[0])
    p.add_argument("--ir", action="append", default=[], metavar="PATH", help="an IR (model.xml or its folder)")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="zoo or timm model, exported on the fly (random weights when not in the zoo)")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME",
                   help="quantization recipe applied to every --model (fp32 is always measured)")
    p.add_argument("--device", action="append", default=[], metavar="D",
                   help=f"OpenVINO device (default: every present one of {', '.join(DEVICES)})")
    p.add_argument("--batch", type=int, default=16, help="throughput-mode batch size")
    p.add_argument("--hint", action="append", choices=HINTS, metavar="|".join(HINTS),
                   help="inference precision hint (default: f32 and bf16)")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds per measurement")
    p.add_argument("--iterations", type=int, default=0, metavar="N",
                   help="requests per measurement instead of --duration")
    p.add_argument("--quick", action="store_true", help="CI mode: 0.5 s per measurement, 8 calibration images")
    p.add_argument("--data", help="calibrate on-the-fly recipes on this data source's train split "
                                  "(fashion-mnist, or an ImageFolder root); default fashion-mnist")
    p.add_argument("--random-calibration", action="store_true",
                   help="calibrate on random images (speed only; labelled so in the IR and the notes)")
    p.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="timm kwargs for every --model")
    p.add_argument("--w4-kernels", action="append", metavar="int8|i4",
                   help="how W4A8/W4A4 IRs built on the fly run their 4-bit weights: int8 GEMM kernels (default) "
                        "or i4 weight-decompression kernels; repeat for one row each (recipe@kernels)")
    p.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="measure everything N times, the IRs taking turns; report the median and the spread")
    p.add_argument("--vs", default="", metavar="RECIPE",
                   help="add speedups against this recipe's IR of the same model (e.g. nncf_default_w8a8)")
    p.add_argument("--cross-check", action="store_true",
                   help="also run OpenVINO's benchmark_app on every measurement and report both")
    p.add_argument("--json", metavar="PATH", help="write the rows and the machine block as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def write_json(path: str | Path, result: dict) -> None:
    """Atomic write (temporary file, then rename)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


def main(argv: Optional[list[str]] = None) -> int:
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    from ..data import DataError

    args = build_parser().parse_args(argv)
    try:
        if args.json and Path(args.json).is_dir():
            raise BenchmarkError(f"--json {args.json} is a folder; give a file path such as {args.json}/ov.json")
        from ..sources import DataSource, parse_model_kwargs

        cfg = BenchConfig(devices=args.device, hints=args.hint or list(HINTS), batch=args.batch,
                          duration_s=args.duration, iterations=args.iterations, quick=args.quick,
                          data=DataSource(args.data).to_json() if args.data else {},
                          random_calibration=args.random_calibration, model_kwargs=parse_model_kwargs(args.model_kwargs),
                          w4_kernels=args.w4_kernels or ["int8"], repeats=args.repeats, versus=args.vs,
                          cross_check=args.cross_check)
        with nncf_output_to_stderr():
            result = benchmark(args.ir, args.model, args.recipe, cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, KeyError, DataError) as e:  # BenchmarkError, ExportError, SpecError...
        print(f"ov_latency: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    print(markdown(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
