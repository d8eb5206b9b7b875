"""Expressivity benchmark: exact 2-D linear regions of a 3x256 ReLU MLP on a plane through three digits.

Model: ``mlp`` with widths (256, 256, 256) on the 8x8 digits (seed 0), at initialisation and after
5 epochs of training. Plane: through the first training examples of classes 0, 1 and 2.
Reference: dense-grid sampling of activation patterns (the usual way to estimate region counts),
which can only find a lower bound on the count; the exact partition is checked against a direct
float64 forward pass. Scaling: the same partition on squares of growing side (time against the
number of regions).

Run: ``python -m bench.bench_expressivity`` (torch single-threaded, as the harness records).
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
from torch import nn

from bench.harness import compare_alternating, record
from deepscope.datasets import load
from deepscope.expressivity import linear_regions
from deepscope.models import build, train

COMMAND = "python -m bench.bench_expressivity"


def plane_through_three_classes(dataset) -> torch.Tensor:
    labels = np.asarray(dataset.y_train)
    chosen = [int(np.flatnonzero(labels == c)[0]) for c in (0, 1, 2)]
    return torch.as_tensor(dataset.x_train[chosen]).reshape(3, -1)


def grid_patterns(model: nn.Module, result, side: int = 256) -> int:
    """Distinct activation patterns on a side x side grid of the same square (a lower bound on the count)."""
    u = np.linspace(result.bounds[0], result.bounds[1], side)
    v = np.linspace(result.bounds[2], result.bounds[3], side)
    coords = np.stack(np.meshgrid(u, v), -1).reshape(-1, 2)
    x = result.to_input(coords).reshape(len(coords), -1)
    patterns = []
    with torch.no_grad():
        h = x
        for layer in copy.deepcopy(model).double():
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                patterns.append((h > 0).numpy())
    packed = np.packbits(np.concatenate(patterns, axis=1), axis=1)
    return len({row.tobytes() for row in packed})


def median_seconds(function, repeats: int = 5, clock=time.process_time) -> float:
    """Median time of ``function`` on ``clock`` (default: this process's CPU time, less sensitive than
    wall time to other jobs)."""
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return float(np.median(times))


def wall_seconds_at_default_threads(function, repeats: int = 5) -> float:
    """Median wall time with torch's default thread count (what a user gets; the machine's cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_THREADS)
    try:
        return median_seconds(function, repeats, clock=time.perf_counter)
    finally:
        torch.set_num_threads(threads)


DEFAULT_THREADS = torch.get_num_threads()  # read before main() pins one thread


def main() -> None:
    torch.set_num_threads(1)
    dataset = load("digits", seed=0)
    plane = plane_through_three_classes(dataset)
    torch.manual_seed(0)
    flat = build("mlp", (64,), 10, widths=(256, 256, 256), batch_norm=False, dropout=0.0).eval()
    trained = train(flat, dataset, epochs=5, lr=1e-3, seed=0).model.eval()
    rows, scaling = [], []
    for label, model in (("at initialisation", flat), ("trained 5 epochs", trained)):
        model = model.eval()
        result = linear_regions(model, plane=plane, max_regions=200_000)
        found = grid_patterns(model, result)
        cpu = median_seconds(lambda model=model: linear_regions(model, plane=plane, max_regions=200_000))
        default = wall_seconds_at_default_threads(
            lambda model=model: linear_regions(model, plane=plane, max_regions=200_000)
        )
        rows.append(
            compare_alternating(
                f"exact 2-D partition, 3x256 ReLU MLP {label}, plane through 3 digits ({result.count} regions)",
                ours=lambda model=model: linear_regions(model, plane=plane, max_regions=200_000),
                reference=lambda model=model, result=result: grid_patterns(model, result),
                reference_name="256x256 grid of activation patterns",
                repeats=3,
                agreement=f"grid finds {found} of {result.count} regions; max |net - affine| {result.max_abs_error:.1e}",
                notes="the grid only gives a lower bound on the count and no polygons; "
                f"one exact partition takes {cpu:.2f} s of CPU time (median of 5, one torch thread; wall time inflates with the "
                f"load), {default:.2f} s of wall time at torch's default {DEFAULT_THREADS} threads (median of 5); "
                f"load average {os.getloadavg()[0]:.1f} on the shared machine during the run",
            )
        )
    full = linear_regions(flat, plane=plane, max_regions=200_000)
    centre_half = (full.bounds[1] - full.bounds[0]) / 2
    for fraction in (0.125, 0.25, 0.5, 0.75, 1.0):
        half = centre_half * fraction
        middle = ((full.bounds[0] + full.bounds[1]) / 2, (full.bounds[2] + full.bounds[3]) / 2)
        bounds = (middle[0] - half, middle[0] + half, middle[1] - half, middle[1] + half)
        start = time.perf_counter()
        result = linear_regions(flat, plane=plane, bounds=bounds, max_regions=200_000)
        seconds = time.perf_counter() - start
        scaling.append((fraction, result.count, seconds))
    table = ["| square side (fraction of full) | regions | seconds | microseconds per region |", "|---|---|---|---|"]
    table += [f"| {f:g} | {n} | {s:.2f} | {1e6 * s / n:.0f} |" for f, n, s in scaling]
    extra = (
        "Time against the number of regions (3x256 MLP at initialisation, squares of growing side "
        "around the centre of the three digits; load average "
        f"{os.getloadavg()[0]:.1f} on the shared 2-core machine):\n\n" + "\n".join(table)
    )
    path = record("expressivity", rows, command=COMMAND, extra_markdown=extra)
    print(path)


if __name__ == "__main__":
    main()
