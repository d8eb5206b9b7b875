"""The report's "Curvature" section: spectrum, trace, sharpness vs 2/η, NTK, landscape.

(The Monitor's training dynamics are drawn by the dynamics family's "Training" section.) Each
estimate is an isolated block (:func:`deepscope.report.sections.run_block`): one that fails shows
its error and the others are still computed and shown.

Budgets: "quick" uses small subsets and loose tolerances (a few seconds on the demo CNN);
"full" uses larger subsets and the library defaults. Every number comes with its cost (HVPs,
forward passes) and, for stochastic estimates, its standard error.
"""

from __future__ import annotations

import math
from typing import Any

from deepscope.curvature.density import hessian_density
from deepscope.curvature.lanczos import hessian_eigenvalues
from deepscope.curvature.landscape import loss_interpolation, loss_surface
from deepscope.curvature.layers import hessian_by_layer
from deepscope.curvature.ntk import ntk
from deepscope.curvature.trace import hessian_trace
from deepscope.errors import DeepscopeError
from deepscope.report.sections import AuditContext, Figure, Part, Section, Table, Text, register_section, run_block
from deepscope.report.svg import figure_to_svg

__all__ = ["build_curvature_section"]

_BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {
        "samples": 128,
        "k": 3,
        "tol": 1e-2,
        "max_iter": 30,
        "trace_tol": 0.05,
        "trace_hvps": 40,
        "slq_vectors": 1,
        "slq_steps": 20,
        "ntk_samples": 24,
        "line_points": 7,
        "line_samples": 128,
        "grid": 5,
        "grid_samples": 64,
    },
    "full": {
        "samples": 1024,
        "k": 10,
        "tol": 1e-3,
        "max_iter": 150,
        "trace_tol": 0.01,
        "trace_hvps": 400,
        "slq_vectors": 3,
        "slq_steps": 60,
        "ntk_samples": 128,
        "line_points": 25,
        "line_samples": 512,
        "grid": 21,
        "grid_samples": 256,
    },
}


@register_section("curvature", title="Curvature", order=60)
def build_curvature_section(context: AuditContext) -> Section:
    """Hessian spectrum and trace, sharpness against 2/η, NTK summary, 1-D/2-D landscape."""
    budget = _BUDGETS.get(context.budget, _BUDGETS["quick"])
    problem = context.problem
    samples = min(budget["samples"], len(problem.train))
    found: dict[str, Any] = {}  # what later blocks and the summary read from earlier ones
    parts = [run_block("Hessian spectrum and trace", lambda: _spectrum_part(context, budget, samples, found))]
    parts.append(run_block("Eigenvalue density", lambda: _density_part(context, budget, samples)))
    if context.budget == "full":
        parts.append(run_block("Per-layer curvature", lambda: _layers_part(context, budget, samples)))
    if context.learning_rate and "top" in found:
        parts.append(run_block("Sharpness against 2/η", lambda: _sharpness_part(context, found)))
    parts.append(run_block("Neural tangent kernel", lambda: _ntk_part(context, budget)))
    if problem.init_state is not None:
        parts.append(run_block("Loss from initial to final weights", lambda: _interpolation_part(context, budget)))
    parts.append(run_block("Loss surface", lambda: _surface_part(context, budget)))

    def summary(_: list[str]) -> str:
        if "top" not in found:
            return "The Hessian could not be estimated (see the error below)."
        top, trace = found["top"], found["trace"]
        if not math.isfinite(top):
            return "The Hessian could not be estimated (non-finite curvature)."
        return (
            f"The sharpest direction of the loss has curvature {top:.3g} (largest Hessian eigenvalue) and the total "
            f"curvature is {trace.trace:.3g} ± {trace.standard_error:.2g} (trace).{found.get('sharpness_sentence', '')}"
        )

    return Section.from_parts(parts, summary=summary)


def _spectrum_part(context: AuditContext, budget: dict[str, Any], samples: int, found: dict[str, Any]) -> Part:
    problem, seed = context.problem, context.seed
    spectrum = hessian_eigenvalues(
        problem, k=budget["k"], tol=budget["tol"], max_iter=budget["max_iter"], seed=seed, max_samples=samples
    )
    context.cache["curvature.hessian_eigenvalues"] = spectrum
    trace = hessian_trace(
        problem, rel_tol=budget["trace_tol"], max_hvps=budget["trace_hvps"], seed=seed, max_samples=samples
    )
    top = spectrum.eigenvalues[0]
    found.update(top=top, trace=trace)
    text = Text(
        f"Hessian of the mean training loss on {samples} samples ({spectrum.n_params} parameters): "
        f"largest eigenvalue {top:.4g} (Lanczos, {spectrum.n_hvps} Hessian-vector products, residual "
        f"{spectrum.residual_norms[0]:.2g}); trace {trace.trace:.4g} ± {trace.standard_error:.2g} "
        f"(Hutch++, {trace.n_hvps} products), i.e. a mean eigenvalue of {trace.trace / trace.n_params:.3g}."
    )
    table = Table(spectrum.rows(), caption="Top Hessian eigenvalues with residual norms ‖Hv − λv‖")
    return Part([text, table], {"hessian_eigenvalues": spectrum.to_dict(), "hessian_trace": trace.to_dict()})


def _density_part(context: AuditContext, budget: dict[str, Any], samples: int) -> Part:
    density = hessian_density(
        context.problem,
        n_vectors=budget["slq_vectors"],
        n_steps=budget["slq_steps"],
        seed=context.seed,
        max_samples=samples,
    )
    caption = "Eigenvalue density (stochastic Lanczos quadrature), log scale"
    return Part([Figure(figure_to_svg(density.plot()), caption=caption)], {"hessian_density": density.rows()[0]})


def _layers_part(context: AuditContext, budget: dict[str, Any], samples: int) -> Part:
    layers = hessian_by_layer(
        context.problem, k=1, tol=budget["tol"], max_hvps=100, seed=context.seed, max_samples=samples
    )
    caption = f"Per-layer curvature (diagonal Hessian blocks, {layers.n_hvps} HVPs)"
    return Part([Table(layers.rows(), caption=caption)], {"hessian_by_layer": layers.rows()})


def _sharpness_part(context: AuditContext, found: dict[str, Any]) -> Part:
    top, limit = found["top"], 2.0 / context.learning_rate
    position = "below" if top < limit else "at or above"
    found["sharpness_sentence"] = f" That is {top / limit:.3g} × 2/η, {position} the gradient-descent stability limit."
    text = Text(
        f"Sharpness {top:.4g} against 2/η = {limit:.4g} (η = {context.learning_rate:g}): plain gradient "
        "descent is stable only while λ_max < 2/η and full-batch training tends to hover at 2/η "
        "(edge of stability, Cohen et al. 2021). For adaptive optimisers such as Adam the relevant "
        "quantity is the preconditioned sharpness, so read this ratio as indicative only."
    )
    return Part([text], {"sharpness_vs_two_over_lr": {"sharpness": top, "two_over_lr": limit, "ratio": top / limit}})


def _ntk_part(context: AuditContext, budget: dict[str, Any]) -> Part:
    problem = context.problem
    x, y = problem.tensors("train", max_samples=min(budget["ntk_samples"], len(problem.train)))
    try:
        kernel = ntk(problem.model, x, y if problem.loss_name in ("cross_entropy", "nll", "mse") else None)
    except DeepscopeError as error:  # a model the NTK does not apply to is not a failure
        return Part([Text(f"NTK skipped: {error}")])
    caption = f"Empirical NTK on {len(x)} training inputs (trace over outputs)"
    return Part([Table(kernel.rows(), caption=caption)], {"ntk": kernel.rows()[0]})


def _interpolation_part(context: AuditContext, budget: dict[str, Any]) -> Part:
    problem = context.problem
    line = loss_interpolation(
        problem, n_points=budget["line_points"], max_samples=min(budget["line_samples"], len(problem.train))
    )
    caption = f"Loss from initial to final weights (barrier {line.barrier:.3g})"
    return Part([Figure(figure_to_svg(line.plot()), caption=caption)], {"loss_interpolation": line.to_dict()})


def _surface_part(context: AuditContext, budget: dict[str, Any]) -> Part:
    problem = context.problem
    surface = loss_surface(
        problem,
        grid_size=budget["grid"],
        max_samples=min(budget["grid_samples"], len(problem.train)),
        seed=context.seed,
    )
    caption = "Loss on a random filter-normalised plane (Li et al. 2018)"
    return Part([Figure(figure_to_svg(surface.plot()), caption=caption)], {"loss_surface": surface.to_dict()})
