"""Faithfulness of attributions: deletion/insertion curves and faithfulness correlation.

* Deletion / insertion (pixel flipping; Bach et al. 2015, Samek et al. 2017, Petsiuk et al. 2018):
  replace features by a baseline value in the order of decreasing attribution and follow the
  target score; a faithful map makes the deletion curve fall fast (low AUC) and the insertion
  curve (features restored onto the baseline, most important first) rise fast (high AUC).
* Faithfulness correlation (Bhatt et al. 2020): the Pearson correlation, over random feature
  subsets S of a fixed size, between Σ_{i∈S} a_i and f(x) − f(x with x_S set to the baseline).

Infidelity (Yeh et al. 2019) lives in :mod:`deepscope.attribution.metrics.infidelity`, ROAD in
:mod:`deepscope.attribution.metrics.road`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_float, check_int
from deepscope.attribution._base import guard_note, prepare_baseline
from deepscope.attribution.metrics._common import (
    DEFAULT_MAX_BATCH,
    AttributionSource,
    check_output,
    mean_and_standard_error,
    prepare_single_target,
    resolve_attributions,
    row_pearson,
    selected_scores,
)
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = [
    "PerturbationCurve",
    "FaithfulnessCorrelation",
    "deletion_curve",
    "insertion_curve",
    "faithfulness_correlation",
]


@dataclasses.dataclass(frozen=True)
class PerturbationCurve(Result):
    """A deletion or insertion curve per example and its area under the curve.

    Attributes:
        kind: "deletion" (lower AUC is better) or "insertion" (higher AUC is better).
        fractions: ``(steps + 1,)`` fraction of features replaced (deletion) or restored (insertion).
        curves: ``(batch, steps + 1)`` target score at each fraction.
        auc: ``(batch,)`` trapezoidal area under each curve over fractions in [0, 1].
        mean_auc, standard_error: mean AUC over examples and its standard error.
        output: "probability" or "logit". model_evaluations: input rows passed through the model.
    """

    kind: str
    fractions: torch.Tensor
    curves: torch.Tensor
    auc: torch.Tensor
    mean_auc: float
    standard_error: float
    output: str
    model_evaluations: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "metric": f"{self.kind} AUC",
                "mean": self.mean_auc,
                "standard_error": self.standard_error,
                "examples": int(self.auc.numel()),
                "better": "lower" if self.kind == "deletion" else "higher",
                "model_evaluations": self.model_evaluations,
            }
        ]

    def plot(self, ax=None):  # -> matplotlib.figure.Figure
        """The mean curve with a ±1 standard-error band."""
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.5, 3.0) if ax is None else (ax.figure, ax)
        curves = self.curves.double()
        mean = curves.mean(dim=0)
        error = curves.std(dim=0) / math.sqrt(max(curves.shape[0], 1)) if curves.shape[0] > 1 else mean * 0
        x = self.fractions.double().numpy()
        ax.plot(x, mean.numpy(), label=f"{self.kind} (AUC {self.mean_auc:.3f})")
        ax.fill_between(x, (mean - error).numpy(), (mean + error).numpy(), alpha=0.3)
        ax.set_xlabel("fraction of features " + ("removed" if self.kind == "deletion" else "inserted"))
        ax.set_ylabel(f"target {self.output}")
        ax.legend()
        return figure


def _feature_ranks(attributions: torch.Tensor) -> torch.Tensor:
    """Position of each feature in the order of decreasing attribution (0 = most important), (batch, d)."""
    flat = attributions.reshape(attributions.shape[0], -1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order).contiguous())
    return ranks


def _perturbation_curve(
    kind: str,
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any,
    attributions: AttributionSource,
    baseline: Any,
    step_fraction: float,
    output: str,
    output_fn: Any,
    max_batch: int,
) -> PerturbationCurve:
    owner = f"{kind}_curve"
    step_fraction = check_float(step_fraction, "step_fraction", owner, minimum=0.0, maximum=1.0, strict_minimum=True)
    output = check_output(output, owner)
    prepared = prepare_single_target(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets[0]
    values = resolve_attributions(
        model, x, targets, attributions, owner, output_fn=output_fn, max_batch=prepared.max_batch
    )
    reference = prepare_baseline(baseline, x, owner)
    batch = x.shape[0]
    flat_x = x.reshape(batch, -1)
    flat_reference = reference.reshape(batch, -1)
    dimension = flat_x.shape[1]
    ranks = _feature_ranks(values)
    steps = math.ceil(1.0 / step_fraction - 1e-9)
    counts = torch.tensor([round(k * dimension / steps) for k in range(steps + 1)], device=x.device)
    total_rows = batch * (steps + 1)
    scores = torch.empty(total_rows, dtype=torch.float64, device=x.device)
    for start in range(0, total_rows, prepared.max_batch):
        rows = torch.arange(start, min(start + prepared.max_batch, total_rows), device=x.device)
        step, example = rows // batch, rows % batch
        changed = ranks[example] < counts[step].unsqueeze(1)
        if kind == "deletion":
            points = torch.where(changed, flat_reference[example], flat_x[example])
        else:
            points = torch.where(changed, flat_x[example], flat_reference[example])
        points = points.reshape(len(rows), *x.shape[1:])
        scores[start : start + len(rows)] = selected_scores(
            prepared.forward, points, targets[example], output, prepared.max_batch
        ).double()
    curves = scores.reshape(steps + 1, batch).t()
    fractions = counts.double() / dimension
    auc = torch.trapezoid(curves, fractions, dim=1)
    mean, error, _ = mean_and_standard_error(auc)
    return PerturbationCurve(
        kind=kind,
        fractions=fractions.cpu(),
        curves=curves.cpu(),
        auc=auc.cpu(),
        mean_auc=mean,
        standard_error=error,
        output=output,
        model_evaluations=prepared.evaluations + total_rows,
        note=guard_note(model),
    )


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"step_fraction": 0.25})
def deletion_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    attributions: AttributionSource = None,
    baseline: Any = 0.0,
    step_fraction: float = 0.05,
    output: str = "probability",
    output_fn: Any = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> PerturbationCurve:
    """Deletion curve (pixel flipping; Samek et al. 2017, Petsiuk et al. 2018): lower AUC = more faithful.

    At step k the ⌈k·d·step_fraction⌉ most-attributed features (ties broken by position) are set to
    the baseline and the target score is recorded; AUC = ∫₀¹ score(fraction) d fraction (trapezoid).

    Args:
        model: classifier, ``model(x) -> (batch, classes)``.
        inputs: ``(batch, *features)``.
        target: None (predicted class), an int or ``(batch,)`` ints.
        attributions: ``(batch, *features)`` tensor, an Attribution, a method name or callable
            (None = saliency).
        baseline: the value that replaces a deleted feature: a number or a tensor shaped like
            ``inputs`` or ``inputs[0]``.
        step_fraction: fraction of features changed per step (0.05 gives 21 points).
        output: "probability" (softmax of the target) or "logit".
        output_fn: maps a tuple/dict output to ``(batch, classes)``. max_batch: rows per forward pass.

    Returns:
        :class:`PerturbationCurve` with per-example curves and AUCs.

    Example:
        >>> net = torch.nn.Linear(4, 2)
        >>> deletion_curve(net, torch.randn(3, 4), target=0, step_fraction=0.5).curves.shape
        torch.Size([3, 3])
    """
    return _perturbation_curve(
        "deletion", model, inputs, target, attributions, baseline, step_fraction, output, output_fn, max_batch
    )


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"step_fraction": 0.25})
def insertion_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    attributions: AttributionSource = None,
    baseline: Any = 0.0,
    step_fraction: float = 0.05,
    output: str = "probability",
    output_fn: Any = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> PerturbationCurve:
    """Insertion curve (Petsiuk et al. 2018): restore features onto the baseline, most important first.

    Higher AUC = more faithful. Same arguments as :func:`deletion_curve`; at step k the
    input is the baseline with the top ⌈k·d·step_fraction⌉ features copied from ``inputs``.

    Example:
        >>> net = torch.nn.Linear(4, 2)
        >>> insertion_curve(net, torch.randn(3, 4), target=0, step_fraction=0.5).auc.shape
        torch.Size([3])
    """
    return _perturbation_curve(
        "insertion", model, inputs, target, attributions, baseline, step_fraction, output, output_fn, max_batch
    )


@dataclasses.dataclass(frozen=True)
class FaithfulnessCorrelation(Result):
    """Faithfulness correlation per example (Bhatt et al. 2020); 1 = attributions predict the drops exactly.

    Attributes:
        correlations: ``(batch,)`` Pearson correlations (NaN where a quantity was constant).
        mean, standard_error: over the examples with a finite correlation (``examples`` of them).
        n_samples, subset_size: random subsets per example and features per subset.
    """

    correlations: torch.Tensor
    mean: float
    standard_error: float
    examples: int
    n_samples: int
    subset_size: int
    output: str
    model_evaluations: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "metric": "faithfulness correlation",
                "mean": self.mean,
                "standard_error": self.standard_error,
                "examples": self.examples,
                "n_samples": self.n_samples,
                "subset_size": self.subset_size,
                "model_evaluations": self.model_evaluations,
            }
        ]


def _random_subsets(rows: int, dimension: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
    """(rows, d) boolean masks, each with exactly ``size`` features chosen uniformly at random."""
    keys = torch.rand(rows, dimension, generator=generator)
    chosen = torch.zeros(rows, dimension, dtype=torch.bool)
    chosen.scatter_(1, keys.argsort(dim=1)[:, :size], True)
    return chosen.to(device)


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"n_samples": 6, "subset_size": 4})
def faithfulness_correlation(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    attributions: AttributionSource = None,
    baseline: Any = 0.0,
    n_samples: int = 50,
    subset_size: int | None = None,
    output: str = "logit",
    seed: int = 0,
    output_fn: Any = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> FaithfulnessCorrelation:
    """Faithfulness correlation (Bhatt et al. 2020).

    μ_F(x) = corr_S( Σ_{i∈S} a_i , f(x) − f(x[x_S = x̄_S]) ) over ``n_samples`` subsets S of
    ``subset_size`` features drawn uniformly; x̄ is the baseline. For a linear model scored by its
    logit, a = w ⊙ (x − x̄) gives μ_F = 1 exactly.

    Args:
        attributions, baseline, output, output_fn, max_batch: as in :func:`deletion_curve`
            (the default output here is the logit, in which the axiom is stated).
        n_samples: subsets per example (>= 2). subset_size: features per subset (default d // 10, at least 1).
        seed: seed of the subset sampler.

    Returns:
        :class:`FaithfulnessCorrelation`.

    Example:
        >>> net = torch.nn.Linear(6, 2)
        >>> x = torch.randn(4, 6)
        >>> a = net.weight[0].detach() * x
        >>> round(faithfulness_correlation(net, x, 0, attributions=a, subset_size=2).mean, 6)
        1.0
    """
    owner = "faithfulness_correlation"
    n_samples = check_int(n_samples, "n_samples", owner, minimum=2)
    output = check_output(output, owner)
    prepared = prepare_single_target(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets[0]
    batch = x.shape[0]
    flat_x = x.reshape(batch, -1)
    dimension = flat_x.shape[1]
    size = max(1, dimension // 10) if subset_size is None else subset_size
    size = check_int(size, "subset_size", owner, minimum=1, maximum=dimension)
    values = resolve_attributions(
        model, x, targets, attributions, owner, output_fn=output_fn, max_batch=prepared.max_batch
    ).reshape(batch, -1)
    flat_reference = prepare_baseline(baseline, x, owner).reshape(batch, -1)
    generator = torch.Generator().manual_seed(seed)
    original = selected_scores(prepared.forward, x, targets, output, prepared.max_batch).double()
    total_rows = batch * n_samples
    drops = torch.empty(total_rows, dtype=torch.float64, device=x.device)
    attributed = torch.empty(total_rows, dtype=torch.float64, device=x.device)
    for start in range(0, total_rows, prepared.max_batch):
        rows = torch.arange(start, min(start + prepared.max_batch, total_rows), device=x.device)
        example = rows // n_samples
        subset = _random_subsets(len(rows), dimension, size, generator, x.device)
        points = torch.where(subset, flat_reference[example], flat_x[example]).reshape(len(rows), *x.shape[1:])
        score = selected_scores(prepared.forward, points, targets[example], output, prepared.max_batch).double()
        drops[start : start + len(rows)] = original[example] - score
        attributed[start : start + len(rows)] = (values[example] * subset).sum(dim=1).double()
    correlations = row_pearson(attributed.reshape(batch, n_samples), drops.reshape(batch, n_samples))
    mean, error, count = mean_and_standard_error(correlations)
    return FaithfulnessCorrelation(
        correlations=correlations.cpu(),
        mean=mean,
        standard_error=error,
        examples=count,
        n_samples=n_samples,
        subset_size=size,
        output=output,
        model_evaluations=prepared.evaluations + batch + total_rows,
        note=guard_note(model),
    )
