"""One measurement of a compiled model: batch-1 latency, batch-N throughput, and OpenVINO's ``benchmark_app`` on
the same IR as a cross-check."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .settings import BenchConfig, BenchmarkError


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



def benchmark_app(xml: Path, device: str, hint: str, mode: str, batch: int, duration_s: float) -> dict:
    """OpenVINO's ``benchmark_app`` on the same IR, device, hints and batch: its median latency and throughput
    (its own JSON report, ``-json_stats``)."""
    import json
    import math
    import shutil
    import subprocess

    from ...export import load_ir

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


def agreement(row: dict, checks: list[dict]) -> dict:
    """benchmark_app's numbers beside ours: medians over the repeats and ours / theirs (1.0 = agree)."""
    theirs = {k: statistics.median(c[k] for c in checks) for k in ("latency_median_ms", "fps")}
    return {**{k: round_stat(v) for k, v in theirs.items()},
            "fps_ratio": round(row["fps"] / theirs["fps"], 3),
            "latency_ratio": round(row["latency_median_ms"] / theirs["latency_median_ms"], 3),
            "runs": {k: [c[k] for c in checks] for k in ("latency_median_ms", "fps")},
            "command": checks[0]["command"]}


def round_stat(v):
    return round(v, 4) if isinstance(v, float) else v

