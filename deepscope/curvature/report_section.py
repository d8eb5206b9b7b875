"""The report's "Curvature" section: spectrum, trace, sharpness vs 2/η, NTK, landscape.

(The Monitor's training dynamics are drawn by the dynamics family's "Training" section.) Each
estimate is an isolated block (:func:`deepscope.report.sections.run_block`): one that fails shows
its error and the others are still computed and shown.

Budgets: "quick" uses small subsets and loose tolerances (a few seconds on the demo CNN);
"full" uses larger subsets and the library defaults. Every number comes with its cost (HVPs,
forward passes) and, for stochastic estimates, its standard error.

Cost bounds (:mod:`deepscope.report.cost`): before a block runs, its example passes are estimated
from the measured cost of one forward+backward pass (a Hessian-vector product costs about
:data:`HVP_PASSES` of them per example, measured on a ResNet-18); the block's sample shrinks to fit
its share of the budget (and says so), or the block declines in one line when even its minimum does
not fit. The NTK is exact when its Jacobian fits in memory and count-sketched with its stated
eigenvalue error otherwise (its exact alternatives cost ``n²·C`` passes or ``n·C·P`` memory).
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
from deepscope.report.cost import declined, estimate, fit_count, pass_cost
from deepscope.report.sections import AuditContext, Figure, Part, Section, Table, Text, register_section, run_block
from deepscope.report.svg import figure_to_svg

__all__ = ["build_curvature_section", "HVP_PASSES", "NTK_ROW_PASSES"]

# example passes (one forward + backward of one example) per Hessian-vector product and example:
# 3.8 measured alone on a ResNet-18 (double backward through every layer), but the whole block ran
# at 4x its estimate with 4 in bench/resnet18_audit.py (1.3x on BERT-small): 8 keeps it near budget.
# The other half is vector work in P that does not grow with the examples: Lanczos's float64
# reorthogonalisation and Hutch++'s probe draws and projections. On BERT-small (29M parameters, one
# example) the 25 products took 15.0 s of CPU and that work 12.7 s (0.5 s per product; 37 s before
# the probes were drawn and applied in bounded blocks), so at many examples 8 over-prices the block.
HVP_PASSES = 8.0
# per (example, output) row of the NTK: a backward pass kept by retain_graph, plus the sketch's
# scatter of P numbers (measured 2.5 on a ResNet-18)
NTK_ROW_PASSES = 2.5
# exact NTK rows are kept in memory up to this size; beyond it the kernel is count-sketched
_NTK_MEMORY_MB = 512.0
_SKETCH_SIZE = 4096
# Lanczos keeps its whole basis in float64 (full reorthogonalisation): iterations x P x 8 bytes; the
# quick and full runs cap it here (a ResNet-18's 30-vector basis took 2.7 GB: 13 vectors fit)
_KRYLOV_BYTES = 1.2e9

_BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {
        "samples": 128,
        "k": 3,
        "tol": 1e-2,
        "max_iter": 30,
        "trace_tol": 0.05,
        "trace_hvps": 20,
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
            if found.get("declined"):
                return "The Hessian was not estimated: it does not fit this budget (see below)."
            return "The Hessian could not be estimated (see the error below)."
        top, trace = found["top"], found["trace"]
        if not math.isfinite(top):
            return "The Hessian could not be estimated (non-finite curvature)."
        return (
            f"The sharpest direction of the loss has curvature {top:.3g} (largest Hessian eigenvalue) and the total "
            f"curvature is {trace.trace:.3g} ± {trace.standard_error:.2g} (trace).{found.get('sharpness_sentence', '')}"
        )

    return Section.from_parts(parts, summary=summary)


def _fitted_text(used: int, wanted: int, what: str = "samples") -> str:
    """A clause saying the sample was cut to fit the budget (empty when it was not)."""
    if used >= wanted:
        return ""
    return f" ({used} of the budget's {wanted} {what}: the largest number that fits its time)"


def _spectrum_part(context: AuditContext, budget: dict[str, Any], samples: int, found: dict[str, Any]) -> Part:
    problem, seed = context.problem, context.seed
    max_iter = _krylov_vectors(context, budget["max_iter"])
    if max_iter < budget["k"] + 2:
        found["declined"] = True
        reason = (
            f"A Lanczos basis of {budget['k'] + 2} vectors of this many parameters exceeds {_KRYLOV_BYTES / 1e9:g} GB."
        )
        return Part([Text(f"Hessian spectrum and trace — not applicable: {reason}")], cost={"declined": reason})
    hvps = max_iter + budget["trace_hvps"]
    calls = hvps * HVP_PASSES  # each product is one batched call over the sample
    fitted = fit_count(context, samples, hvps * HVP_PASSES, share=2.0, fixed_calls=calls)
    cost = estimate(context, "Hessian spectrum and trace", fitted * hvps * HVP_PASSES, share=2.0, calls=calls)
    if not cost.fits:
        found["declined"] = True
        return declined(cost, "Even one example's Lanczos and Hutch++ products do not fit; use budget='full'.")
    spectrum = hessian_eigenvalues(
        problem, k=budget["k"], tol=budget["tol"], max_iter=max_iter, seed=seed, max_samples=fitted
    )
    context.cache["curvature.hessian_eigenvalues"] = spectrum
    # Hutch++ holds its sketch, H·sketch and their basis in float64: 3 x sketch x P x 8 bytes
    sketch = max(1, min(_krylov_vectors(context, budget["trace_hvps"]) // 3, budget["trace_hvps"] // 4))
    trace = hessian_trace(
        problem,
        rel_tol=budget["trace_tol"],
        max_hvps=budget["trace_hvps"],
        seed=seed,
        max_samples=fitted,
        sketch_size=sketch,
    )
    top = spectrum.eigenvalues[0]
    found.update(top=top, trace=trace)
    text = Text(
        f"Hessian of the mean training loss on {fitted} samples{_fitted_text(fitted, samples)} "
        f"({spectrum.n_params} parameters): largest eigenvalue {top:.4g} (Lanczos, {spectrum.n_hvps} Hessian-vector "
        f"products, residual {spectrum.residual_norms[0]:.2g}); trace {trace.trace:.4g} ± {trace.standard_error:.2g} "
        f"(Hutch++, {trace.n_hvps} products), i.e. a mean eigenvalue of {trace.trace / trace.n_params:.3g}."
        + _krylov_text(max_iter, budget["max_iter"])
    )
    table = Table(spectrum.rows(), caption="Top Hessian eigenvalues with residual norms ‖Hv − λv‖")
    passes = (spectrum.n_hvps + trace.n_hvps) * fitted * HVP_PASSES
    return Part(
        [text, table],
        {"hessian_eigenvalues": spectrum.to_dict(), "hessian_trace": trace.to_dict()},
        cost={**cost.to_dict(), "passes": passes, "samples": fitted},
    )


def _density_part(context: AuditContext, budget: dict[str, Any], samples: int) -> Part:
    steps = _krylov_vectors(context, budget["slq_steps"])
    hvps = budget["slq_vectors"] * steps
    calls = hvps * HVP_PASSES
    fitted = fit_count(context, samples, hvps * HVP_PASSES, share=0.75, fixed_calls=calls)
    cost = estimate(context, "Eigenvalue density", fitted * hvps * HVP_PASSES, share=0.75, calls=calls)
    if not cost.fits:
        return declined(cost, "Stochastic Lanczos quadrature needs its steps even on one example.")
    density = hessian_density(
        context.problem,
        n_vectors=budget["slq_vectors"],
        n_steps=steps,
        seed=context.seed,
        max_samples=fitted,
    )
    caption = (
        f"Eigenvalue density (stochastic Lanczos quadrature, {steps} steps) on {fitted} samples"
        f"{_fitted_text(fitted, samples)}, log scale{_krylov_text(steps, budget['slq_steps'])}"
    )
    return Part(
        [Figure(figure_to_svg(density.plot()), caption=caption)],
        {"hessian_density": density.rows()[0]},
        cost={**cost.to_dict(), "passes": hvps * fitted * HVP_PASSES, "samples": fitted},
    )


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
    wanted = min(budget["ntk_samples"], len(problem.train))
    classes = int(problem.output_shape[-1]) if getattr(problem, "output_shape", None) else 1
    per_input = classes * NTK_ROW_PASSES  # one backward call of one example per (input, output)
    fitted = fit_count(context, wanted, per_input, calls_per_unit=per_input)
    cost = estimate(context, "Neural tangent kernel", max(fitted, 2) * per_input, calls=max(fitted, 2) * per_input)
    if fitted < 2 or not cost.fits:
        return declined(cost, "A kernel needs at least two inputs, each with one backward pass per output.")
    x, y = problem.tensors("train", max_samples=fitted)
    parameters = pass_cost(context).parameters
    exact_mb = fitted * classes * parameters * 4 / 2**20
    method = "sketch" if exact_mb > _NTK_MEMORY_MB else "auto"
    try:
        kernel = ntk(
            problem.model,
            x,
            y if problem.loss_name in ("cross_entropy", "nll", "mse") else None,
            method=method,
            sketch_size=_SKETCH_SIZE,
            seed=context.seed,
            output_fn=getattr(problem, "output_fn", None),
        )
    except DeepscopeError as error:  # a model the NTK does not apply to is not a failure
        return Part([Text(f"NTK not computed: {error}")])
    caption = f"Empirical NTK on {len(x)} training inputs{_fitted_text(len(x), wanted, 'inputs')} (trace over outputs)"
    blocks: list[Any] = [Table(kernel.rows(), caption=caption)]
    if kernel.method == "sketch":
        blocks.append(
            Text(
                f"The exact kernel's Jacobian would take {exact_mb:.3g} MB, so each gradient row was count-sketched "
                f"into {kernel.sketch_size} buckets (diagonal exact): every eigenvalue is within about "
                f"{kernel.eigenvalue_error:.3g} of the exact kernel's (RMS bound on the Frobenius error, Weyl); "
                "eigenvalues, condition number and label alignment below that scale are not resolved."
            )
        )
    return Part(blocks, {"ntk": kernel.rows()[0]}, cost={**cost.to_dict(), "passes": cost.passes})


def _interpolation_part(context: AuditContext, budget: dict[str, Any]) -> Part:
    problem = context.problem
    wanted = min(budget["line_samples"], len(problem.train))
    forward = _forward_passes(context)
    calls = budget["line_points"] * _forward_calls(context)
    fitted = fit_count(context, wanted, budget["line_points"] * forward, share=0.5, fixed_calls=calls)
    cost = estimate(
        context, "Loss from initial to final weights", fitted * budget["line_points"] * forward, share=0.5, calls=calls
    )
    if not cost.fits:
        return declined(cost)
    line = loss_interpolation(problem, n_points=budget["line_points"], max_samples=fitted)
    caption = f"Loss from initial to final weights (barrier {line.barrier:.3g}) on {fitted} samples"
    caption += _fitted_text(fitted, wanted)
    return Part(
        [Figure(figure_to_svg(line.plot()), caption=caption)],
        {"loss_interpolation": line.to_dict()},
        cost={**cost.to_dict(), "passes": cost.passes, "samples": fitted},
    )


def _surface_part(context: AuditContext, budget: dict[str, Any]) -> Part:
    problem = context.problem
    wanted = min(budget["grid_samples"], len(problem.train))
    forward = _forward_passes(context)
    points = budget["grid"] ** 2
    calls = points * _forward_calls(context)
    fitted = fit_count(context, wanted, points * forward, share=0.75, fixed_calls=calls)
    cost = estimate(context, "Loss surface", fitted * points * forward, share=0.75, calls=calls)
    if not cost.fits:
        return declined(cost)
    surface = loss_surface(problem, grid_size=budget["grid"], max_samples=fitted, seed=context.seed)
    caption = f"Loss on a random filter-normalised plane (Li et al. 2018), {fitted} samples" + _fitted_text(
        fitted, wanted
    )
    return Part(
        [Figure(figure_to_svg(surface.plot()), caption=caption)],
        {"loss_surface": surface.to_dict()},
        cost={**cost.to_dict(), "passes": cost.passes, "samples": fitted},
    )


def _forward_passes(context: AuditContext) -> float:
    """One example's forward pass in example passes (forward+backward), as measured."""
    unit = pass_cost(context)
    return unit.forward_seconds / unit.seconds


def _forward_calls(context: AuditContext) -> float:
    """One forward call's fixed cost in forward+backward calls, as measured."""
    unit = pass_cost(context)
    return unit.forward_call_seconds / unit.call_seconds if unit.call_seconds > 0 else 0.0


def _krylov_vectors(context: AuditContext, wanted: int) -> int:
    """Lanczos vectors whose float64 basis fits :data:`_KRYLOV_BYTES` (at most ``wanted``)."""
    return min(wanted, int(_KRYLOV_BYTES // (8 * max(pass_cost(context).parameters, 1))))


def _krylov_text(used: int, wanted: int) -> str:
    if used >= wanted:
        return ""
    return (
        f" The Lanczos basis was capped at {used} of {wanted} vectors so that it fits {_KRYLOV_BYTES / 1e9:g} GB "
        "(float64, one per iteration); its residuals say how converged the values are."
    )
