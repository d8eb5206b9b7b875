"""The report's "Expressivity" section: exact regions on a data plane, counts against bounds, mean field, Lipschitz.

Budgets: "quick" caps the exact partition at a few thousand regions (zooming in on the three
training points until it fits, and saying so), uses a narrow random network for the mean-field
check and a short local search for the Lipschitz lower bound; "full" allows 60 000 regions, a
width-1000 check and a longer search.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from deepscope.errors import DeepscopeError
from deepscope.expressivity.activations import activation_catalogue
from deepscope.expressivity.capacity import capacity
from deepscope.expressivity.layer_health import layer_health
from deepscope.expressivity.lipschitz import lipschitz
from deepscope.expressivity.regions import _domain, linear_regions
from deepscope.expressivity.signal_propagation import _MODULE_ACTIVATIONS, initialization_verdict
from deepscope.expressivity.trajectory import trajectory_length
from deepscope.models.initial import initial_copy
from deepscope.report.sections import AuditContext, Figure, Part, Section, Table, Text, register_section, run_block
from deepscope.report.svg import figure_to_svg

__all__ = ["build_expressivity_section"]

_BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {
        "max_regions": 2500,
        "zooms": 5,
        "width": 128,
        "networks": 1,
        "edge_points": 4,
        "search": 5,
        "n": 64,
        "trajectory_points": 256,
    },
    "full": {
        "max_regions": 60000,
        "zooms": 6,
        "width": 1000,
        "networks": 3,
        "edge_points": 9,
        "search": 30,
        "n": 256,
        "trajectory_points": 2048,
    },
}


def _plane_points(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Three training points of three different classes when there are (else the first three)."""
    chosen, seen = [], set()
    for index, label in enumerate(targets.tolist()):
        if label not in seen:
            chosen.append(index)
            seen.add(label)
        if len(chosen) == 3:
            return inputs[chosen]
    return inputs[:3]


def _regions_block(model, inputs, targets, budget, density=None) -> tuple[list[Any], dict[str, Any], str, Any]:
    plane = _plane_points(inputs, targets)
    full = _square(plane)
    side = full[1] - full[0]
    if density is None:  # exact breakpoints per unit length on the segment between two of the points (1-D)
        segment = linear_regions(model, line=plane[:2], max_regions=budget["max_regions"] * 10)
        density = max(segment.count - 1, 1) / segment.measure
    # an arrangement with ~density crossings per unit length has ~(pi/4)(density * side)^2 regions;
    # aim at half the budget since the density is an estimate
    fitting = 0.6 * budget["max_regions"] ** 0.5 / density
    zoom, last_error = min(1.0, fitting / side), None
    for _ in range(budget["zooms"]):
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
    sentence = f"{result.count} linear regions on a plane through three training points"
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


def _square(plane: torch.Tensor) -> tuple[float, ...]:
    """The default domain of ``linear_regions`` for this plane (the bounding square with its margin)."""
    return _domain(None, None, plane.to(torch.float64), 0.25)[2]


@register_section("expressivity", title="Expressivity", order=50)
def build_expressivity_section(context: AuditContext) -> Section:
    """Regions on a data plane, counts vs bounds, the initialisation's mean-field verdict and the Lipschitz interval."""
    budget = _BUDGETS.get(context.budget, _BUDGETS["quick"])
    problem = context.problem
    model = problem.model
    inputs, targets = problem.tensors("train", max_samples=budget["n"])
    found: dict[str, Any] = {}  # the exact regions, which the capacity block compares with its bounds
    parts: list[Part] = []

    def regions_block(blocks: list[Any], results: dict[str, Any], sentences: list[str]) -> None:
        try:  # the Kac-Rice density along random lines through the data sizes the plane's domain
            density = capacity(model, inputs).hanin_rolnick_density
        except DeepscopeError:
            density = None
        try:
            region_blocks, region_results, sentence, found["regions"] = _regions_block(
                model, inputs, targets, budget, density
            )
            blocks += region_blocks
            results["linear_regions"] = region_results
            sentences.append(sentence)
        except DeepscopeError as error:
            blocks.append(Text(f"Exact linear regions are not available for this model: {error}"))

    parts.append(_isolated("Linear regions", regions_block))

    def capacity_block(blocks: list[Any], results: dict[str, Any], sentences: list[str]) -> None:
        try:
            bounds = capacity(model, inputs, regions=found.get("regions"))
            blocks.append(
                Table(
                    bounds.rows(),
                    caption="Counts against theory (Serra 2018 upper and Montúfar 2014 "
                    "lower bounds on the number of regions, Hanin & Rolnick 2019, VC rates of Bartlett 2019); "
                    "log10 shown for huge numbers",
                )
            )
            if bounds.notes:
                blocks.append(Text("Caveats: " + "; ".join(bounds.notes) + "."))
            results["capacity"] = bounds.to_dict()
            if found.get("regions") is not None and bounds.hanin_rolnick_density is not None:
                segment = linear_regions(
                    model, line=_plane_points(inputs, targets)[:2], max_regions=budget["max_regions"] * 20
                )
                expected = 1.0 + bounds.hanin_rolnick_density * segment.measure
                blocks.append(
                    Text(
                        f"On the segment between two training points (length {segment.measure:.3g}) the network has "
                        f"exactly {segment.count} linear pieces; Hanin & Rolnick's Kac-Rice estimate from the data "
                        f"predicts {expected:.3g} (breakpoints per unit length: measured "
                        f"{(segment.count - 1) / segment.measure:.3g}, predicted {bounds.hanin_rolnick_density:.3g} ± "
                        f"{bounds.hanin_rolnick_standard_error:.2g}), i.e. about the number of neurons times a per-neuron "
                        "density, not exponential in depth."
                    )
                )
                results["segment"] = {
                    "count": segment.count,
                    "length": segment.measure,
                    "hanin_rolnick_expected": expected,
                }
        except DeepscopeError as error:
            blocks.append(Text(f"Capacity bounds are not available: {error}"))

    parts.append(_isolated("Capacity bounds", capacity_block))

    def mean_field_block(blocks: list[Any], results: dict[str, Any], sentences: list[str]) -> None:
        try:
            at_init = model
            origin = "trained weights (no initial weights were given)"
            if problem.init_state is not None:
                at_init = initial_copy(model, problem.init_state)
                origin = "weights at initialisation"
            verdict = initialization_verdict(
                at_init, width=budget["width"], networks=budget["networks"], edge_points=budget["edge_points"]
            )
            blocks.append(
                Text(
                    f"Mean-field signal propagation for the {origin}: {verdict.summary()} Depth scale of "
                    f"correlations xi_c = {verdict.xi_c:.3g} layers (Schoenholz et al. 2017)."
                )
            )
            blocks.append(
                Figure(
                    figure_to_svg(verdict.plot()),
                    caption="Correlation of two inputs through depth "
                    f"(mean field vs a random width-{verdict.width} network) and the edge of chaos.",
                )
            )
            results["initialization_verdict"] = verdict.to_dict()
            used = sorted({_MODULE_ACTIVATIONS[type(m)] for m in model.modules() if type(m) in _MODULE_ACTIVATIONS})
            if used:
                catalogue = activation_catalogue(used)
                columns = [
                    "name",
                    "lipschitz",
                    "smooth",
                    "monotonic",
                    "saturates_left",
                    "saturates_right",
                    "zero_centred",
                    "critical_sigma_w",
                ]
                blocks.append(
                    Table(
                        [{c: row[c] for c in columns} for row in catalogue.rows()],
                        caption="The model's activations (critical sigma_w: edge of chaos at sigma_b = 0)",
                    )
                )
            subject = "the initialisation" if problem.init_state is not None else "the trained weight scale"
            sentences.append(f"{subject} is {verdict.phase} in mean-field terms (chi_1 = {verdict.chi_1:.3g})")
        except DeepscopeError as error:
            blocks.append(Text(f"Mean-field verdict not available: {error}"))

    parts.append(_isolated("Mean-field verdict", mean_field_block))

    def health_block(blocks: list[Any], results: dict[str, Any], sentences: list[str]) -> None:
        try:
            labels = targets if problem.num_classes is not None else None  # regression targets are not classes
            health = layer_health(model, inputs, labels, jacobian_points=min(8, len(inputs)))
            blocks.append(Text(f"Layer health on {health.examples} training inputs: {health.summary()}"))
            blocks.append(
                Table(
                    health.rows(),
                    caption="Per activation layer: dead units (never active), saturated "
                    "units (derivative < 5% of its maximum on 95% of inputs), statistics and RMS gradient",
                )
            )
            blocks.append(
                Figure(figure_to_svg(health.plot()), caption="Dead and saturated units; gradient through depth")
            )
            results["layer_health"] = health.to_dict()
        except DeepscopeError as error:
            blocks.append(Text(f"Layer health not available: {error}"))

    parts.append(_isolated("Layer health", health_block))

    def trajectory_block(blocks: list[Any], results: dict[str, Any], sentences: list[str]) -> None:
        try:
            trajectory = trajectory_length(model, inputs[:3], points=budget["trajectory_points"])
            lengths = ", ".join(f"{row['length']:.3g}" for row in trajectory.layers)
            blocks.append(
                Text(
                    f"Trajectory length (Raghu et al. 2017) of a circle through three training points, after the "
                    f"input, each activation and the output: {lengths}; x{trajectory.growth_rate:.3g} per layer."
                )
            )
            results["trajectory_length"] = trajectory.to_dict()
        except DeepscopeError as error:
            blocks.append(Text(f"Trajectory length not available: {error}"))

    parts.append(_isolated("Trajectory length", trajectory_block))

    def lipschitz_block(blocks: list[Any], results: dict[str, Any], sentences: list[str]) -> None:
        try:
            interval = lipschitz(model, inputs, search_steps=budget["search"], seed=context.seed)
            blocks.append(
                Text(
                    f"Lipschitz constant (l2): {interval.summary()}; {interval.evaluations} forward/backward "
                    "passes. The lower bound is a measured Jacobian norm, the upper bound a certified product "
                    "of exact operator norms."
                )
            )
            blocks.append(Table(interval.rows(), caption="Operator norm of each layer"))
            results["lipschitz"] = interval.to_dict()
            if interval.lower is not None:
                sentences.append(f"its Lipschitz constant lies in [{interval.lower:.3g}, {interval.upper:.3g}]")
        except DeepscopeError as error:
            blocks.append(Text(f"Lipschitz bounds not available: {error}"))

    parts.append(_isolated("Lipschitz bounds", lipschitz_block))

    return Section.from_parts(parts, summary=_summary)


def _summary(sentences: list[str]) -> str:
    return ("The model has " + "; ".join(sentences) + ".") if sentences else "No expressivity analysis applied."


def _isolated(label: str, fill: Callable[[list[Any], dict[str, Any], list[str]], None]) -> Part:
    """Run one block that fills blocks, results and summary clauses; any exception becomes its error box."""

    def build() -> Part:
        blocks: list[Any] = []
        results: dict[str, Any] = {}
        sentences: list[str] = []
        fill(blocks, results, sentences)
        return Part(blocks, results, "; ".join(sentences))

    return run_block(label, build)
