"""The report's "Expressivity" section: exact regions on a data plane, counts against bounds, mean field, Lipschitz.

Budgets: "quick" caps the exact partition at a few thousand regions (zooming in on the three
training points until it fits, and saying so), uses a narrow random network for the mean-field
check and a short local search for the Lipschitz lower bound; "full" allows 60 000 regions, a
width-1000 check and a longer search.

Each block first says in one line when it does not apply (token or dict inputs, a network torch.fx
cannot trace, exact regions of a smooth network, mean field for a transformer); then it estimates
its cost from the measured pass (:mod:`deepscope.report.cost`): the region cap, the Kac-Rice sample
(also bounded to 1 GB of recorded pre-activations), trajectory points and Lipschitz inputs shrink to
fit, and a block whose minimum does not fit declines in one line (a ResNet-18's exact partition:
thousands of breakpoints per unit length, each region a float64 pass).

The zoomed exact partition is drawn by :mod:`deepscope.expressivity._report_regions`; the blocks'
plumbing (not applicable / declined lines, isolation, the Kac-Rice sample) is in
:mod:`deepscope.expressivity._report_blocks`.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from deepscope.errors import DeepscopeError, UnsupportedModelError
from deepscope.expressivity._report_blocks import (
    KAC_RICE_PASSES,
    decline,
    forward_ratio,
    input_reason,
    isolated,
    kac_rice_sample,
    not_applicable,
    section_summary,
)
from deepscope.expressivity._report_regions import plane_points, zoomed_partition
from deepscope.expressivity.activations import activation_catalogue
from deepscope.expressivity.capacity import _relu_widths, capacity
from deepscope.expressivity.layer_health import layer_health
from deepscope.expressivity.lipschitz import lipschitz
from deepscope.expressivity.regions import linear_regions
from deepscope.expressivity.signal_propagation import _MODULE_ACTIVATIONS, initialization_verdict
from deepscope.expressivity.trajectory import trajectory_length
from deepscope.models.initial import initial_copy
from deepscope.report.cost import declined, estimate, fit_count
from deepscope.report.sections import AuditContext, Figure, Part, Section, Table, Text, register_section
from deepscope.report.svg import figure_to_svg

__all__ = ["build_expressivity_section"]

# cost of each unit of work in forward passes of one example (float64 passes count about two)
_REGION_PASSES = 2.0  # per linear region of the exact partition (each carried through every layer in float64)
# (the Kac-Rice sample's KAC_RICE_PASSES per example lives in _report_blocks, next to the sample's size)
# per point of the circle: 1.5 float64 fx-interpreted forward passes (the path, then every other point)
# keeping every activation; float64 convolutions cost ~6 float32 ones on CPU (ResNet-18: 9.5 measured)
_TRAJECTORY_PASSES = 10.0
# in example passes (forward + backward)
_HEALTH_PASSES = 2.0  # per example: the fx interpreter's forward with every activation kept, and its backward
_LIPSCHITZ_PASSES = 20.0  # per point: power iteration on the Jacobian (jvp + vjp pairs)
_MIN_REGIONS = 50
_CATALOGUE_COLUMNS = (
    "name lipschitz smooth monotonic saturates_left saturates_right zero_centred critical_sigma_w".split()
)

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


@register_section("expressivity", title="Expressivity", order=50)
def build_expressivity_section(context: AuditContext) -> Section:
    """Regions on a data plane, counts vs bounds, the initialisation's mean-field verdict and the Lipschitz interval.

    Each block first asks whether it applies (continuous inputs, a network torch.fx can trace, a
    piecewise-linear network for exact regions) and says why in one line when it does not; then it
    estimates its cost (:mod:`deepscope.report.cost`) and shrinks its sample or declines.
    """
    budget = _BUDGETS.get(context.budget, _BUDGETS["quick"])
    problem = context.problem
    model = problem.model
    inputs, targets = problem.tensors("train", max_samples=budget["n"])
    output_fn = getattr(problem, "output_fn", None)
    why_not = input_reason(inputs)  # None for continuous inputs
    shape: dict[str, Any] = {}
    if why_not is None:
        try:
            widths, piecewise, _ = _relu_widths(copy.deepcopy(model).to(torch.float64).eval(), inputs[:1].double())
            shape.update(units=max(sum(widths), 1), piecewise=piecewise and bool(widths))
        except DeepscopeError as error:
            why_not = str(error)
    found: dict[str, Any] = {}  # the exact regions and Kac-Rice sample, which later blocks reuse
    parts: list[Part] = []

    def regions_block(blocks: list[Any], results: dict[str, Any], sentences: list[str], cost: dict[str, Any]) -> None:
        if why_not is not None or not shape["piecewise"]:
            reason = why_not or (
                "exact linear regions exist only for piecewise-linear networks (ReLU, leaky ReLU, max-pool); this "
                "network has smooth activations (or no ReLU), so it is affine on no open region to count"
            )
            return not_applicable(blocks, cost, "Exact linear regions", reason)
        started = time.perf_counter()
        kac_rice = kac_rice_sample(context, budget, shape["units"])
        found["kac_rice"] = kac_rice
        try:  # the Kac-Rice density along random lines through the data sizes the plane's domain
            density = capacity(model, inputs[:kac_rice]).hanin_rolnick_density
        except DeepscopeError:
            density = None
        ratio = forward_ratio(context)
        kac_passes = kac_rice * KAC_RICE_PASSES * ratio  # part of this block's time: the partition gets the rest
        per_region = _REGION_PASSES * ratio * 2
        affordable = fit_count(context, budget["max_regions"], per_region, share=1.5, fixed_passes=kac_passes)
        found_cost = estimate(context, "Exact linear regions", kac_passes + _MIN_REGIONS * per_region, share=1.5)
        if affordable < _MIN_REGIONS or not found_cost.fits:
            return decline(blocks, cost, found_cost, f"Fewer than {_MIN_REGIONS} regions fit its time.")
        local = {**budget, "max_regions": affordable}
        found_cost = estimate(context, "Exact linear regions", kac_passes + affordable * per_region, share=1.5)
        deadline = started + found_cost.budget_seconds
        drawn = zoomed_partition(model, inputs, targets, local, density, deadline=deadline)
        if drawn is None:
            reason = f"Zoomed in, the plane still held over {affordable} regions; another try would pass its time."
            return decline(blocks, cost, found_cost, reason)
        region_blocks, region_results, sentence, found["regions"] = drawn
        blocks += region_blocks
        results["linear_regions"] = region_results
        sentences.append(sentence)
        cost.update(found_cost.to_dict(), regions_cap=affordable, kac_rice_examples=kac_rice)

    parts.append(isolated("Linear regions", regions_block))

    def capacity_block(blocks: list[Any], results: dict[str, Any], sentences: list[str], cost: dict[str, Any]) -> None:
        if why_not is not None:
            return not_applicable(blocks, cost, "Capacity bounds", why_not)
        kac_rice = found.get("kac_rice") or kac_rice_sample(context, budget, shape["units"])
        bounds = capacity(model, inputs[:kac_rice], regions=found.get("regions"))
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
        cost.update(kac_rice_examples=kac_rice)
        if found.get("regions") is not None and bounds.hanin_rolnick_density is not None:
            ends = plane_points(inputs, targets)[:2]
            length = float((ends[1] - ends[0]).double().norm())
            expected = 1.0 + bounds.hanin_rolnick_density * length
            segment_cost = estimate(context, "Exact segment", expected * _REGION_PASSES * forward_ratio(context))
            if not segment_cost.fits:
                blocks += declined(segment_cost, f"About {expected:.3g} pieces are expected (Hanin & Rolnick).").blocks
                return
            segment = linear_regions(model, line=ends, max_regions=max(budget["max_regions"] * 20, int(3 * expected)))
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
            results["segment"] = {"count": segment.count, "length": segment.measure, "hanin_rolnick_expected": expected}

    parts.append(isolated("Capacity bounds", capacity_block))

    def mean_field_block(
        blocks: list[Any], results: dict[str, Any], sentences: list[str], cost: dict[str, Any]
    ) -> None:
        at_init = model
        origin = "trained weights (no initial weights were given)"
        if problem.init_state is not None:
            at_init = initial_copy(model, problem.init_state)
            origin = "weights at initialisation"
        try:
            verdict = initialization_verdict(
                at_init, width=budget["width"], networks=budget["networks"], edge_points=budget["edge_points"]
            )
        except UnsupportedModelError as error:
            return not_applicable(blocks, cost, "The mean-field verdict", str(error))
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
            blocks.append(
                Table(
                    [{c: row[c] for c in _CATALOGUE_COLUMNS} for row in catalogue.rows()],
                    caption="The model's activations (critical sigma_w: edge of chaos at sigma_b = 0)",
                )
            )
        subject = "the initialisation" if problem.init_state is not None else "the trained weight scale"
        sentences.append(f"In mean-field terms {subject} is {verdict.phase} (chi_1 = {verdict.chi_1:.3g}).")

    parts.append(isolated("Mean-field verdict", mean_field_block))

    def health_block(blocks: list[Any], results: dict[str, Any], sentences: list[str], cost: dict[str, Any]) -> None:
        if why_not is not None:
            return not_applicable(blocks, cost, "Layer health", why_not)
        classes = int(problem.output_shape[-1]) if getattr(problem, "output_shape", None) else 1
        points = min(8, len(inputs), max(fit_count(context, 8, classes, minimum=0, share=0.5), 0))
        count = fit_count(context, len(inputs), _HEALTH_PASSES, minimum=2, fixed_passes=points * classes)
        found_cost = estimate(context, "Layer health", count * _HEALTH_PASSES + points * classes)
        if not found_cost.fits:
            return decline(blocks, cost, found_cost)
        labels = targets[:count] if problem.num_classes is not None else None  # regression targets are not classes
        health = layer_health(model, inputs[:count], labels, jacobian_points=points, output_fn=output_fn)
        blocks.append(Text(f"Layer health on {health.examples} training inputs: {health.summary()}"))
        blocks.append(
            Table(
                health.rows(),
                caption="Per activation layer: dead units (never active), saturated "
                "units (derivative < 5% of its maximum on 95% of inputs), statistics and RMS gradient",
            )
        )
        blocks.append(Figure(figure_to_svg(health.plot()), caption="Dead and saturated units; gradient through depth"))
        results["layer_health"] = health.to_dict()
        cost.update(found_cost.to_dict(), examples=count, jacobian_points=points)

    parts.append(isolated("Layer health", health_block))

    def trajectory_block(
        blocks: list[Any], results: dict[str, Any], sentences: list[str], cost: dict[str, Any]
    ) -> None:
        if why_not is not None:
            return not_applicable(blocks, cost, "Trajectory length", why_not)
        per_point = _TRAJECTORY_PASSES * forward_ratio(context)
        points = fit_count(context, budget["trajectory_points"], per_point, minimum=16, share=0.5)
        found_cost = estimate(context, "Trajectory length", points * per_point, share=0.5)
        if not found_cost.fits:
            return decline(blocks, cost, found_cost)
        trajectory = trajectory_length(model, inputs[:3], points=points)
        lengths = ", ".join(f"{row['length']:.3g}" for row in trajectory.layers)
        blocks.append(
            Text(
                f"Trajectory length (Raghu et al. 2017) of a circle through three training points ({points} points), "
                f"after the input, each activation and the output: {lengths}; x{trajectory.growth_rate:.3g} per layer."
            )
        )
        results["trajectory_length"] = trajectory.to_dict()
        cost.update(found_cost.to_dict(), points=points)

    parts.append(isolated("Trajectory length", trajectory_block))

    def lipschitz_block(blocks: list[Any], results: dict[str, Any], sentences: list[str], cost: dict[str, Any]) -> None:
        if why_not is not None:
            return not_applicable(blocks, cost, "Lipschitz bounds", why_not)
        search = _LIPSCHITZ_PASSES * 4 * budget["search"]
        per_point = {"passes_per_unit": _LIPSCHITZ_PASSES, "calls_per_unit": _LIPSCHITZ_PASSES}
        count = fit_count(context, len(inputs), minimum=1, fixed_passes=search, fixed_calls=search, **per_point)
        passes = search + count * _LIPSCHITZ_PASSES
        found_cost = estimate(context, "Lipschitz bounds", passes, calls=passes)
        if not found_cost.fits:
            return decline(blocks, cost, found_cost)
        interval = lipschitz(
            model, inputs[:count], search_steps=budget["search"], seed=context.seed, output_fn=output_fn
        )
        blocks.append(
            Text(
                f"Lipschitz constant (l2) from {count} training inputs: {interval.summary()}; {interval.evaluations} "
                "forward/backward passes. The lower bound is a measured Jacobian norm, the upper bound a certified "
                "product of exact operator norms."
            )
        )
        blocks.append(Table(interval.rows(), caption="Operator norm of each layer"))
        results["lipschitz"] = interval.to_dict()
        cost.update(found_cost.to_dict(), passes=interval.evaluations, examples=count)
        if interval.lower is not None:
            sentences.append(f"Its Lipschitz constant lies in [{interval.lower:.3g}, {interval.upper:.3g}].")

    parts.append(isolated("Lipschitz bounds", lipschitz_block))

    return Section.from_parts(parts, summary=section_summary)
