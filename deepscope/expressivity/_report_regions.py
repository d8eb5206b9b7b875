"""The expressivity section's exact-partition drawing: a plane through three training points, zoomed to fit.

Private helper of :mod:`deepscope.expressivity.report_section` (the only module that imports it).
An arrangement of hyperplanes crossed about ``d`` times per unit length holds about
``(pi/4)(d * side)^2`` regions in a square of side ``side`` (Hanin & Rolnick, 2019, count the
breakpoints per unit length); the block aims the square at half the region budget and halves its side
after each try that exceeds the cap, up to the budget's number of zooms or the block's deadline.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from deepscope.errors import DeepscopeError
from deepscope.expressivity.regions import linear_regions, region_domain
from deepscope.report.sections import Figure, Table, Text
from deepscope.report.svg import figure_to_svg

__all__ = ["plane_points", "plane_square", "zoomed_partition"]


def plane_points(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Three training points of three different classes when there are (else the first three)."""
    chosen, seen = [], set()
    for index, label in enumerate(targets.tolist()):
        if label not in seen:
            chosen.append(index)
            seen.add(label)
        if len(chosen) == 3:
            return inputs[chosen]
    return inputs[:3]


def zoomed_partition(
    model: Any,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    budget: dict[str, Any],
    density: float | None = None,
    deadline: float | None = None,
) -> tuple | None:
    """The partition on the data plane, zoomed in to fit; None if a retry (about one try's time) would pass deadline.

    Returns ``(blocks, results, summary sentence, LinearRegionsResult)``.
    """
    plane = plane_points(inputs, targets)
    full = plane_square(plane)
    side = full[1] - full[0]
    if density is None:  # exact breakpoints per unit length on the segment between two of the points (1-D)
        segment = linear_regions(model, line=plane[:2], max_regions=budget["max_regions"] * 10)
        density = max(segment.count - 1, 1) / segment.measure
    # an arrangement with ~density crossings per unit length has ~(pi/4)(density * side)^2 regions;
    # aim at half the budget since the density is an estimate
    fitting = 0.6 * budget["max_regions"] ** 0.5 / density
    zoom, last_error = min(1.0, fitting / side), None
    for _ in range(budget["zooms"]):
        started = time.perf_counter()
        try:
            if zoom >= 1.0:
                result = linear_regions(model, inputs, plane=plane, max_regions=budget["max_regions"])
            else:
                half = side * zoom / 2  # zoom in on the first training point, at plane coordinates (0, 0)
                bounds = (-half, half, -half, half)
                result = linear_regions(model, inputs, plane=plane, bounds=bounds, max_regions=budget["max_regions"])
            break
        except DeepscopeError as error:
            if "max_regions" not in str(error):
                raise
            last_error, zoom = error, zoom / 2
            if deadline is not None and time.perf_counter() + (time.perf_counter() - started) > deadline:
                return None
    else:
        raise last_error
    zoom_text = (
        ""
        if zoom >= 1.0
        else f" The square around the three points would hold more than {budget['max_regions']} regions (the "
        f"budget; about {density:.3g} breakpoints per unit length near the data), so the partition is drawn on "
        f"a square of side {side * zoom:.3g} around the first point ({zoom:.2g} of the full square's side)."
    )
    text = (
        f"Exact partition of a plane through three training points (of different classes) into the "
        f"{result.count} pieces where the network is affine: {result.density:.3g} regions per unit area of input "
        f"space, {len(result.decision_boundary)} decision-boundary segments. Each region's affine map was checked "
        f"against a direct float64 forward pass (largest difference {result.max_abs_error:.1e}).{zoom_text}"
    )
    figure = Figure(
        figure_to_svg(result.plot()),
        caption="Linear regions (colours), decision boundary (black), "
        "training points projected on the plane (dots, coloured by predicted class).",
    )
    sentence = (
        f"The network's exact partition has {result.count} linear regions on a plane through three training points."
    )
    results = {
        "count": result.count,
        "density": result.density,
        "measure": result.measure,
        "bounds": list(result.bounds),
        "layers": result.layers,
        "max_abs_error": result.max_abs_error,
        "decision_boundary_segments": len(result.decision_boundary),
        "breakpoints_per_unit_length_estimate": density,
        "zoom": zoom,
    }
    return (
        [Text(text), figure, Table(result.rows(), caption="Regions after each nonlinearity")],
        results,
        sentence,
        result,
    )


def plane_square(plane: torch.Tensor) -> tuple[float, ...]:
    """The default domain of ``linear_regions`` for this plane (the bounding square with its margin)."""
    return region_domain(None, None, plane.to(torch.float64), 0.25)[2]
