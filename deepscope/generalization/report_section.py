"""The report's "Generalization" section: measures, certificates and bounds, memorisation.

Each analysis is one isolated block (:func:`deepscope.report.sections.run_block`): a failing one
shows its error in place and the others are still computed and shown.

Budgets: "quick" (a few seconds on the demo CNN) uses small subsets, a short post-hoc PAC-Bayes
scaling and a short memorisation probe; "full" uses the library defaults, an optimised f-quad
posterior, and adds the learning curve (when no training history is given), label-noise
sensitivity and the regularisation comparison. Every number carries its sample counts.

Cost bounds (:mod:`deepscope.report.cost`): the measures get the block budget as their
``max_family_seconds`` (an expensive family is declined by ``measures`` with its prediction); the
PAC-Bayes certificate's batch, the memorisation probe's examples and the classic bounds' sample are
fitted to the budget from the measured cost of one example's pass, and each says what it used, or
declines in one line when even its minimum does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from deepscope._batchnorm import AFFINE_LAYERS
from deepscope.errors import DataError, DeepscopeError
from deepscope.generalization._measures import measures, spectral_metrics
from deepscope.generalization.bounds.classic import classic_bounds
from deepscope.generalization.bounds.pac_bayes import pac_bayes_certificate
from deepscope.generalization.bounds.test_set import test_set_bound
from deepscope.generalization.diagnostics import (
    gap_estimate,
    label_noise_sensitivity,
    learning_curve,
    memorisation_probe,
    regularisation_comparison,
)
from deepscope.report.cost import block_seconds, declined, estimate, fit_count, pass_cost
from deepscope.report.sections import AuditContext, Figure, Part, Section, Table, Text, register_section, run_block
from deepscope.report.svg import figure_to_svg

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["build_generalization_section"]

_MEASURE_SHARE = 1.5  # block budgets each expensive measure family may take
_NOISY_PASSES = 1.5  # one PAC-Bayes step per example: a forward+backward through noisy weights, plus the noise
_MIN_BATCH = 16
_MIN_MEMO = 16
_MEMO_SHARE = 1.0  # block budgets of the memorisation probe (a side diagnostic, not the point of the section)
# classic_bounds' convolution spectral norms: at most this many Lanczos steps on AᵀA per conv layer
# (conv_operator_spectral_norm's cap; a random ResNet-18 stops after ~77 on average, so this is an upper bound)
_LANCZOS_STEPS = 100
# one step through every convolution (a convolution and its transpose on one example each), in example
# passes: ResNet-18, 20 convolutions x 100 steps took 3.95 s CPU at 0.039 s per example pass (101 passes);
# bench/report_estimates.py measures the block against this estimate (1.00 on a quiet machine)
_PASSES_PER_SWEEP = 1.0
_LAYER_PROBE = 8  # examples of the forward pass that discovers the layers (build_context)

_BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {
        "measure_samples": 128,
        "sharpness_samples": 2,
        "bisection_steps": 3,
        "objective": "scale",
        "prior": "init",
        "iterations": 30,
        "prior_iterations": 0,
        "mc_samples": 2,
        "bound_samples": 512,
        "test_samples": 5,
        "memo_epochs": 8,
        "memo_samples": 128,
        "extras": False,
    },
    "full": {
        "measure_samples": 2048,
        "sharpness_samples": 8,
        "bisection_steps": 10,
        "objective": "f-quad",
        "prior": "data",
        "iterations": 300,
        "prior_iterations": 2000,
        "mc_samples": 10,
        "bound_samples": None,
        "test_samples": 50,
        "memo_epochs": 50,
        "memo_samples": 512,
        "extras": True,
    },
}


def _measure_rows(result) -> list[dict]:
    return [
        {
            "measure": row["name"],
            "value": row["value"],
            "normalised": row["normalised"],
            "meaning": row["meaning"],
            "reference": row["reference"],
            "note": row["note"],
        }
        for row in result.rows()
    ]


def _certificate_block(problem: Problem, budget, seed, batch_size: int = 256) -> tuple[list[Any], dict[str, Any], str]:
    prior = budget["prior"] if problem.init_state is not None else "data"
    certificate = pac_bayes_certificate(
        problem,
        batch_size=batch_size,
        objective=budget["objective"] if prior == budget["prior"] else "f-quad",
        prior=prior,
        iterations=budget["iterations"],
        prior_iterations=budget["prior_iterations"] or 200,
        mc_samples=budget["mc_samples"],
        max_samples=budget["bound_samples"],
        seed=seed,
    )
    rows = [
        {"term": "certificate on the stochastic predictor's error", "value": certificate.certificate},
        {"term": "confidence (1 − δ − δ')", "value": certificate.confidence},
        {
            "term": f"Monte-Carlo training error L̂_S ({certificate.mc_draws} per-example weight draws)",
            "value": certificate.empirical_risk_mc,
        },
        {"term": "its upper bound L̂⁺ = kl⁻¹(L̂_S, log(2/δ')/N)", "value": certificate.empirical_risk_bound},
        {"term": "KL(Q‖P) in nats", "value": certificate.kl},
        {
            "term": f"(KL + log(2√n·G/δ))/n, n = {certificate.n_bound}, G = {certificate.grid_size}",
            "value": certificate.kl_term,
        },
        {
            "term": f"prior σ_P (prior at {'initialisation' if prior == 'init' else 'weights learned on held-out data'})",
            "value": certificate.prior_sigma,
        },
    ]
    results = {"pac_bayes_certificate": certificate.to_dict()}
    comparison = ""
    if problem.test is not None and len(problem.test):
        measured = certificate.stochastic_error(problem.tensors("test"), samples=budget["test_samples"], seed=seed)
        rows.append(
            {
                "term": f"measured stochastic test error ({measured.samples} samples × {measured.n} examples)",
                "value": measured.error,
            }
        )
        results["stochastic_test_error"] = measured.to_dict()
        comparison = (
            f" against a measured stochastic test error of {measured.error:.3f} ± {measured.standard_error:.3f}"
        )
    chance = 1.0 - 1.0 / problem.num_classes  # the error of guessing: a certificate above it says nothing
    verdict = "vacuous" if certificate.certificate >= chance else "non-vacuous"
    text = (
        f"PAC-Bayes certificate ({certificate.objective}, {certificate.iterations} optimisation steps): with probability "
        f"{certificate.confidence:.0%} the Gaussian stochastic version of the network errs at most "
        f"{certificate.certificate:.3f} ({verdict}){comparison}. A certificate close to 1 means the weights moved too "
        "far from the prior, relative to their noise tolerance, for this many training examples."
    )
    if prior == "data":
        text += (
            " The certified network is Gaussian around a copy trained from the initial weights on a held-out half of "
            "the training set (the data-dependent prior of Pérez-Ortiz et al. 2021); the other half gives the bound."
        )
    else:
        text += (
            " The certified network is Gaussian noise around your trained weights, with the prior at initialisation."
        )
    blocks = [Text(text), Table(rows, caption="Certificate and each of its terms (Pérez-Ortiz et al. 2021)")]
    return blocks, results, f"the PAC-Bayes certificate is {certificate.certificate:.3f} ({verdict})"


@register_section("generalization", title="Generalization", order=30)
def build_generalization_section(context: AuditContext) -> Section:
    """Measures table, test-set bound, PAC-Bayes certificate, classic bounds and memorisation probe."""
    budget = _BUDGETS.get(context.budget, _BUDGETS["quick"])
    problem, seed = context.problem, context.seed
    if problem.num_classes is None:
        return Section(
            summary="Generalization measures and bounds are defined for classifiers; this model has a regression loss.",
            blocks=[
                Text(f"Loss {problem.loss_name!r}: the margin-, 0-1-error- and PAC-Bayes-based analyses do not apply.")
            ],
        )
    parts: list[Part] = []
    if problem.test is not None and len(problem.test):
        parts.append(run_block("Test-set bound", lambda: _test_set_part(problem, context)))
    parts.append(run_block("Generalization measures", lambda: _measures_part(problem, budget, seed, context)))
    parts.append(run_block("Spectral metrics", lambda: _spectral_part(problem)))
    parts.append(run_block("PAC-Bayes certificate", lambda: _certificate_part(problem, budget, seed, context)))
    parts.append(run_block("Classic bounds", lambda: _classic_part(problem, budget, context)))
    parts.append(run_block("Memorisation probe", lambda: _memorisation_part(problem, budget, seed, context)))
    if budget["extras"] and problem.test is not None:
        if context.history is None:
            parts.append(run_block("Learning curve", lambda: _learning_curve_part(problem, seed)))
        parts.append(run_block("Label-noise sensitivity", lambda: _label_noise_part(problem, seed)))
        parts.append(run_block("Regularisation comparison", lambda: _regularisation_part(problem, seed)))
    elif context.history is None:
        parts.append(
            Part(
                [
                    Text(
                        "Learning curves: the model was not trained by deepscope; run with budget 'full' to retrain copies."
                    )
                ]
            )
        )
    return Section.from_parts(parts, summary=_summary)


def _summary(sentences: list[str]) -> str:
    summary = ("On this model, " + "; ".join(sentences) + ".") if sentences else "Generalization measures computed."
    return summary[0].upper() + summary[1:]


def _test_set_part(problem: Problem, context: AuditContext) -> Part:
    # the training section evaluated both splits already (same model, same data): reuse, not a second pass
    gap = context.cache.get("training.generalization_gap") or gap_estimate(problem)
    bound = test_set_bound(round(gap.test_error * gap.n_test), gap.n_test, 0.05)
    return Part(
        [Text(gap.sentence() + " " + bound.summary() + " (binomial tail inversion, Langford 2005)")],
        {"gap": gap.to_dict(), "test_set_bound": bound.to_dict()},
        f"the test error is at most {bound.bound:.3f} with 95% confidence",
    )


def _measures_part(problem: Problem, budget: dict[str, Any], seed: int, context: AuditContext) -> Part:
    table = measures(
        problem,
        max_samples=budget["measure_samples"],
        sharpness_samples=budget["sharpness_samples"],
        bisection_steps=budget["bisection_steps"],
        seed=seed,
        max_family_seconds=_MEASURE_SHARE * block_seconds(context),
    )
    blocks: list[Any] = [
        Table(
            _measure_rows(table),
            caption=(
                f"Generalization measures (Jiang et al. 2020) on {table.samples_used} training examples, BatchNorm folded; "
                f"normalised = √(μ/m) or (μ − log m)/2 for log-scale measures; {table.forward_passes} example-forward passes."
            ),
        )
    ]
    if table.unsupported_layers:
        blocks.append(Text("Not covered by the norm measures: " + "; ".join(table.unsupported_layers) + "."))
    return Part(blocks, {"measures": table.to_dict()}, cost={"forward_passes": table.forward_passes})


def _spectral_part(problem: Problem) -> Part:
    spectra = spectral_metrics(problem.model, min_eigenvalues=20)
    caption = "Power-law α of each layer's eigenvalue spectrum (grey: unreliable fit)"
    return Part([Figure(figure_to_svg(spectra.plot()), caption=caption)])


def _certificate_part(problem: Problem, budget: dict[str, Any], seed: int, context: AuditContext) -> Part:
    data_prior = problem.init_state is None or budget["prior"] == "data"
    steps = budget["iterations"] + ((budget["prior_iterations"] or 200) if data_prior else 0)
    examples = (
        len(problem.train) if budget["bound_samples"] is None else min(budget["bound_samples"], len(problem.train))
    )
    draws = budget["mc_samples"] * examples * _forward_ratio(context)  # the Monte-Carlo training error
    calls = steps * _NOISY_PASSES
    batch = fit_count(
        context, 256, steps * _NOISY_PASSES, minimum=_MIN_BATCH, fixed_passes=draws, share=1.5, fixed_calls=calls
    )
    found = estimate(context, "PAC-Bayes certificate", draws + batch * steps * _NOISY_PASSES, share=1.5, calls=calls)
    if not found.fits:
        return declined(found, f"Its {steps} optimisation steps need batches of at least {_MIN_BATCH} examples.")
    try:
        blocks, results, sentence = _certificate_block(problem, budget, seed, batch_size=batch)
    except DeepscopeError as error:  # a certificate that does not apply (e.g. too few examples) is not a failure
        return Part([Text(f"PAC-Bayes certificate skipped: {error}")])
    if batch < 256:
        blocks.insert(1, Text(f"Optimised with batches of {batch} examples (256 do not fit this budget's time)."))
    return Part(blocks, results, sentence, cost={**found.to_dict(), "batch_size": batch})


def _token_inputs(problem: Problem) -> bool:
    """True when the model's inputs are token ids or a dict of tensors (not continuous vectors)."""
    x, _ = problem.tensors("train", max_samples=1)
    return isinstance(x, Mapping) or not x.is_floating_point()


def _classic_part(problem: Problem, budget: dict[str, Any], context: AuditContext) -> Part:
    if _token_inputs(problem):
        reason = (
            "their complexity terms need the norm of continuous input vectors (B = max ‖x‖ over the data), and this "
            "model's inputs are token ids"
        )
        return Part([Text(f"Classic bounds — not applicable: {reason}.")], cost={"not_applicable": reason})
    wanted = len(problem.train) if budget["bound_samples"] is None else min(budget["bound_samples"], len(problem.train))
    counts = _classic_counts(problem.model, wanted)
    passes, calls = _classic_passes(counts, context)
    found = estimate(context, "Classic bounds", passes, calls=calls)
    if not found.fits:
        reason = "Their margins need a forward pass over the bound's examples"
        if counts["conv_layers"]:
            reason += f", and each of the {counts['conv_layers']} convolutions up to {_LANCZOS_STEPS} Lanczos steps"
        part = declined(found, reason + ".")
        return Part(part.blocks, cost={**part.cost, **counts})
    classic = classic_bounds(problem, max_samples=budget["bound_samples"])
    blocks = [
        Text(classic.summary() + " Classic bounds hold for every network of the class, which is why they are loose."),
        Table(classic.rows(), caption="Classic bounds on the 0-1 error: training term + complexity term"),
    ]
    finite = [b.value for b in classic.bounds if math.isfinite(b.value)]
    sentence = f"the classic bounds reach up to {max(finite):.3g}" if finite else ""
    return Part(blocks, {"classic_bounds": classic.to_dict()}, sentence, cost={**found.to_dict(), **counts})


def _classic_counts(model: nn.Module, examples: int) -> dict[str, int]:
    """What :func:`classic_bounds` runs on ``examples`` training examples, counted before it runs.

    * forward passes of ``forward_examples`` examples: the layer discovery on the first
      ``min(examples, 8)``, the margins on all of them, and the path norm's one all-ones input (run
      when the margin bounds apply: counted always, an upper bound by one example);
    * ``conv_layers`` x at most ``lanczos_steps`` Lanczos steps on AᵀA, each one convolution and its
      transpose on one example (:func:`deepscope.generalization._measures._layers.conv_operator_spectral_norm`;
      Linear layers take an exact SVD, not counted).
    """
    convs = sum(1 for m in model.modules() if isinstance(m, AFFINE_LAYERS) and not isinstance(m, nn.Linear))  # Conv1-3d
    return {
        "forward_examples": examples + min(examples, _LAYER_PROBE) + 1,
        "conv_layers": convs,
        "lanczos_steps": _LANCZOS_STEPS if convs else 0,
    }


def _classic_passes(counts: dict[str, int], context: AuditContext) -> tuple[float, float]:
    """``(example passes, calls)`` of :func:`_classic_counts`, priced by the measured pass.

    A forward example costs the measured forward ratio of an example pass; one iteration through every
    convolution (one Lanczos step each) costs ``_PASSES_PER_SWEEP`` example passes (its call overheads included). The old
    estimate (forward passes only) said 2.7 s for a 6.1 s block on ResNet-18. Calls: three forward calls.
    """
    unit = pass_cost(context)
    ratio = unit.forward_seconds / unit.seconds
    call_ratio = unit.forward_call_seconds / unit.call_seconds if unit.call_seconds > 0 else 1.0
    passes = counts["forward_examples"] * ratio + counts["lanczos_steps"] * _PASSES_PER_SWEEP
    return passes, 3 * call_ratio


def _memorisation_part(problem: Problem, budget: dict[str, Any], seed: int, context: AuditContext) -> Part:
    wanted = min(budget["memo_samples"], len(problem.train))
    epochs, ratio = budget["memo_epochs"], _forward_ratio(context)
    # two copies (true and random labels); each epoch a forward + backward pass per example, then two
    # forward passes per example (the trainer's train loss and the probe's train accuracy, both also at
    # epoch 0): ResNet-18 measured 48 s where the old 2 x epochs passes per example said 30 s
    per_example = 2 * (epochs + (epochs + 1) * 2 * ratio)
    calls = 2 * (epochs + 2 * (epochs + 1))  # at least one batch per step and evaluation, per copy
    samples = fit_count(  # calls: one batch per step and evaluation, then one more per 64 examples
        context, wanted, per_example, minimum=_MIN_MEMO, share=_MEMO_SHARE, fixed_calls=calls, calls_per_unit=calls / 64
    )
    found = estimate(
        context, "Memorisation probe", samples * per_example, share=_MEMO_SHARE, calls=calls * -(-samples // 64)
    )
    if not found.fits:
        return declined(found, f"Two copies trained {budget['memo_epochs']} epochs on {_MIN_MEMO} examples.")
    try:
        probe = memorisation_probe(problem, epochs=budget["memo_epochs"], max_samples=samples, lr=3e-3, seed=seed)
    except DataError as error:  # data the retraining cannot take (e.g. a dict of tensors) is not a failure
        return Part(
            [Text(f"Memorisation probe not run: {str(error).rstrip('.')}.")], cost={"not_applicable": str(error)}
        )
    fitted = "" if samples >= wanted else f" ({samples} of the budget's {wanted} examples: what fits its time)"
    blocks = [
        Text("Memorisation probe (Zhang et al. 2017): " + probe.summary() + fitted),
        Figure(
            figure_to_svg(probe.plot()),
            caption=f"Train accuracy of copies on true and random labels ({probe.n} examples)",
        ),
    ]
    return Part(blocks, {"memorisation": probe.to_dict()}, cost={**found.to_dict(), "examples": samples})


def _forward_ratio(context: AuditContext) -> float:
    unit = pass_cost(context)
    return unit.forward_seconds / unit.seconds


def _learning_curve_part(problem: Problem, seed: int) -> Part:
    curve = learning_curve(problem, seed=seed)
    caption = "Learning curve in the training-set size"
    return Part([Figure(figure_to_svg(curve.plot()), caption=caption)], {"learning_curve": curve.to_dict()})


def _label_noise_part(problem: Problem, seed: int) -> Part:
    noise = label_noise_sensitivity(problem, epochs=10, seed=seed)
    caption = "Label-noise sensitivity (copies retrained with corrupted labels)"
    return Part([Table(noise.rows(), caption=caption)], {"label_noise": noise.to_dict()})


def _regularisation_part(problem: Problem, seed: int) -> Part:
    regular = regularisation_comparison(problem, epochs=10, seed=seed)
    blocks: list[Any] = [Table(regular.rows(), caption="Regularisation comparison: gap and measures per setting")]
    if regular.not_defined:
        blocks.append(Text("Not defined for this model/data: " + "; ".join(regular.not_defined) + "."))
    return Part(blocks, {"regularisation": regular.to_dict()})
