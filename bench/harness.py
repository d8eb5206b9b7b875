"""Benchmark harness: time deepscope and a reference library in one process, on the same inputs.

Each benchmark script builds its inputs once, then calls :func:`compare` for each pair of
callables and :func:`record` to save the rows as ``bench/results/<topic>.json``.
``python -m bench.collect`` regenerates BENCHMARKS.md from every results file, so scripts
written in parallel never edit the same file.

The reported ratio is ``reference median / deepscope median`` (above 1: deepscope is faster).
Timings are wall-clock medians over ``repeats`` runs after ``warmup`` runs, with torch limited
to the thread count recorded in the row.

Example (in a script under bench/):
    from bench.harness import compare, record
    rows = [compare("top eigenvalue, MLP 10k params", ours=lambda: ..., reference=lambda: ...,
                    reference_name="PyHessian 0.1", agreement="rel. diff 2e-4")]
    record("curvature", rows, command="python -m bench.bench_curvature")
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["time_call", "compare", "compare_alternating", "record", "machine"]


def machine() -> str:
    """A one-line description of where the numbers were measured."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def time_call(function: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def compare(
    task: str,
    *,
    ours: Callable[[], Any],
    reference: Callable[[], Any],
    reference_name: str,
    repeats: int = 5,
    warmup: int = 1,
    agreement: str = "",
    notes: str = "",
) -> dict[str, Any]:
    """Time both callables alternately-fairly (same process, same inputs) and return one row."""
    ours_times = time_call(ours, repeats, warmup)
    reference_times = time_call(reference, repeats, warmup)
    ours_median = statistics.median(ours_times)
    reference_median = statistics.median(reference_times)
    return {
        "task": task,
        "reference": reference_name,
        "deepscope_median_s": ours_median,
        "reference_median_s": reference_median,
        "speedup": reference_median / ours_median if ours_median > 0 else float("inf"),
        "repeats": repeats,
        "agreement": agreement,
        "notes": notes,
    }


def compare_alternating(
    task: str,
    *,
    ours: Callable[[], Any],
    reference: Callable[[], Any],
    reference_name: str,
    repeats: int = 5,
    warmup: int = 1,
    agreement: str = "",
    notes: str = "",
) -> dict[str, Any]:
    """Like :func:`compare`, but the two sides alternate call by call (ours first on even rounds).

    On a shared machine the load drifts; alternating gives both sides the same drift, so the ratio
    of medians is fairer than timing one side's repeats and then the other's. The row also records
    the 1-minute load average at the start (``load_average``).
    """
    for _ in range(warmup):
        ours()
        reference()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    for round_ in range(repeats):
        order = (("ours", ours), ("reference", reference))
        for name, function in order if round_ % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    ours_median, reference_median = statistics.median(times["ours"]), statistics.median(times["reference"])
    return {
        "task": task,
        "reference": reference_name,
        "deepscope_median_s": ours_median,
        "reference_median_s": reference_median,
        "speedup": reference_median / ours_median if ours_median > 0 else float("inf"),
        "repeats": repeats,
        "agreement": agreement,
        "notes": notes,
        "load_average": load,
    }


def record(topic: str, rows: list[dict[str, Any]], *, command: str, extra_markdown: str = "") -> Path:
    """Save rows (plus the command that produced them and the machine) to bench/results/<topic>.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{topic}.json"
    payload = {
        "topic": topic,
        "command": command,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        "extra_markdown": extra_markdown,
    }
    path.write_text(json.dumps(payload, indent=2))
    return path
