"""The report's "Curvature" section: spectrum, trace, sharpness vs 2/η, NTK, landscape.

(The Monitor's training dynamics are drawn by the dynamics family's "Training" section.)

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
from deepscope.report.sections import AuditContext, Figure, Section, Table, Text, register_section
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
    problem, seed = context.problem, context.seed
    blocks: list[Any] = []
    results: dict[str, Any] = {}
    samples = min(budget["samples"], len(problem.train))

    spectrum = hessian_eigenvalues(
        problem, k=budget["k"], tol=budget["tol"], max_iter=budget["max_iter"], seed=seed, max_samples=samples
    )
    context.cache["curvature.hessian_eigenvalues"] = spectrum
    trace = hessian_trace(
        problem, rel_tol=budget["trace_tol"], max_hvps=budget["trace_hvps"], seed=seed, max_samples=samples
    )
    density = hessian_density(
        problem, n_vectors=budget["slq_vectors"], n_steps=budget["slq_steps"], seed=seed, max_samples=samples
    )
    results.update(
        hessian_eigenvalues=spectrum.to_dict(), hessian_trace=trace.to_dict(), hessian_density=density.rows()[0]
    )
    top = spectrum.eigenvalues[0]
    blocks.append(
        Text(
            f"Hessian of the mean training loss on {samples} samples ({spectrum.n_params} parameters): "
            f"largest eigenvalue {top:.4g} (Lanczos, {spectrum.n_hvps} Hessian-vector products, residual "
            f"{spectrum.residual_norms[0]:.2g}); trace {trace.trace:.4g} ± {trace.standard_error:.2g} "
            f"(Hutch++, {trace.n_hvps} products), i.e. a mean eigenvalue of {trace.trace / trace.n_params:.3g}."
        )
    )
    blocks.append(Table(spectrum.rows(), caption="Top Hessian eigenvalues with residual norms ‖Hv − λv‖"))
    blocks.append(
        Figure(figure_to_svg(density.plot()), caption="Eigenvalue density (stochastic Lanczos quadrature), log scale")
    )

    if context.budget == "full":
        layers = hessian_by_layer(problem, k=1, tol=budget["tol"], max_hvps=100, seed=seed, max_samples=samples)
        results["hessian_by_layer"] = layers.rows()
        blocks.append(
            Table(layers.rows(), caption=f"Per-layer curvature (diagonal Hessian blocks, {layers.n_hvps} HVPs)")
        )

    sharpness_sentence = ""
    if context.learning_rate:
        limit = 2.0 / context.learning_rate
        results["sharpness_vs_two_over_lr"] = {"sharpness": top, "two_over_lr": limit, "ratio": top / limit}
        position = "below" if top < limit else "at or above"
        sharpness_sentence = f" That is {top / limit:.3g} × 2/η, {position} the gradient-descent stability limit."
        blocks.append(
            Text(
                f"Sharpness {top:.4g} against 2/η = {limit:.4g} (η = {context.learning_rate:g}): plain gradient "
                "descent is stable only while λ_max < 2/η and full-batch training tends to hover at 2/η "
                "(edge of stability, Cohen et al. 2021). For adaptive optimisers such as Adam the relevant "
                "quantity is the preconditioned sharpness, so read this ratio as indicative only."
            )
        )

    x, y = problem.tensors("train", max_samples=min(budget["ntk_samples"], len(problem.train)))
    try:
        kernel = ntk(problem.model, x, y if problem.loss_name in ("cross_entropy", "nll", "mse") else None)
        results["ntk"] = kernel.rows()[0]
        blocks.append(Table(kernel.rows(), caption=f"Empirical NTK on {len(x)} training inputs (trace over outputs)"))
    except DeepscopeError as error:
        blocks.append(Text(f"NTK skipped: {error}"))

    if problem.init_state is not None:
        line = loss_interpolation(
            problem, n_points=budget["line_points"], max_samples=min(budget["line_samples"], len(problem.train))
        )
        results["loss_interpolation"] = line.to_dict()
        blocks.append(
            Figure(
                figure_to_svg(line.plot()), caption=f"Loss from initial to final weights (barrier {line.barrier:.3g})"
            )
        )
    surface = loss_surface(
        problem, grid_size=budget["grid"], max_samples=min(budget["grid_samples"], len(problem.train)), seed=seed
    )
    results["loss_surface"] = surface.to_dict()
    blocks.append(
        Figure(figure_to_svg(surface.plot()), caption="Loss on a random filter-normalised plane (Li et al. 2018)")
    )

    summary = (
        f"The sharpest direction of the loss has curvature {top:.3g} (largest Hessian eigenvalue) and the total "
        f"curvature is {trace.trace:.3g} ± {trace.standard_error:.2g} (trace).{sharpness_sentence}"
    )
    if not math.isfinite(top):
        summary = "The Hessian could not be estimated (non-finite curvature)."
    return Section(summary=summary, blocks=blocks, results=results)
