"""Infidelity of attributions (Yeh et al. 2019): how well does Iᵀa predict the output change?

INFD(a, f, x) = E_I[(Iᵀa − (f(x) − f(x − I)))²] over perturbations I (Gaussian noise by default,
or explicit perturbations); Captum's ``infidelity`` computes the same quantity.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from deepscope._allocation import check_allocation
from deepscope._validation import check_float, check_int
from deepscope.attribution._base import guard_note
from deepscope.attribution.metrics._common import (
    DEFAULT_MAX_BATCH,
    AttributionSource,
    check_output,
    mean_and_standard_error,
    prepare_single_target,
    resolve_attributions,
    selected_scores,
)
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["Infidelity", "infidelity"]


@dataclasses.dataclass(frozen=True)
class Infidelity(Result):
    """Infidelity per example (Yeh et al. 2019); 0 = the attributions predict every perturbation exactly.

    Attributes:
        values: ``(batch,)`` mean squared error over the perturbations.
        per_example_standard_error: ``(batch,)`` Monte-Carlo standard error of each value.
        mean, standard_error: over the examples.
    """

    values: torch.Tensor
    per_example_standard_error: torch.Tensor
    mean: float
    standard_error: float
    n_samples: int
    noise_std: float
    normalise: bool
    output: str
    model_evaluations: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "metric": "infidelity",
                "mean": self.mean,
                "standard_error": self.standard_error,
                "examples": int(self.values.numel()),
                "n_samples": self.n_samples,
                "normalise": self.normalise,
                "model_evaluations": self.model_evaluations,
            }
        ]


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"n_samples": 4})
def infidelity(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    attributions: AttributionSource = None,
    n_samples: int = 10,
    noise_std: float = 0.1,
    perturbations: torch.Tensor | None = None,
    normalise: bool = False,
    output: str = "logit",
    seed: int = 0,
    output_fn: Any = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Infidelity:
    """Infidelity (Yeh et al. 2019): INFD(a, f, x) = E_I[(Iᵀa − (f(x) − f(x − I)))²].

    With ``normalise=True`` the attributions are first rescaled by the optimal
    β = E[Iᵀa·Δf] / E[(Iᵀa)²] per example (as Captum's ``normalize=True``).

    Args:
        attributions, output, output_fn, max_batch: as in :func:`deletion_curve` (logit by default,
            like Captum's ``infidelity`` on a model's forward).
        n_samples: perturbations per example. noise_std: std of the Gaussian perturbations I.
        perturbations: optional explicit I of shape ``(n_samples, batch, *features)`` (overrides
            the sampler; n_samples is taken from it).
        normalise: rescale by β first. seed: seed of the Gaussian sampler.

    Returns:
        :class:`Infidelity` with per-example values and Monte-Carlo standard errors.

    Example:
        >>> net = torch.nn.Linear(5, 2)
        >>> x = torch.randn(3, 5)
        >>> a = net.weight[0].detach().expand(3, 5)   # exact for a linear model
        >>> infidelity(net, x, 0, attributions=a).mean < 1e-10
        True
    """
    owner = "infidelity"
    output = check_output(output, owner)
    prepared = prepare_single_target(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets[0]
    batch = x.shape[0]
    if perturbations is not None:
        if not isinstance(perturbations, torch.Tensor) or perturbations.dim() != x.dim() + 1:
            raise invalid_parameter(
                "perturbations", owner, f"a tensor of shape (n_samples, {', '.join(map(str, x.shape))})", perturbations
            )
        if tuple(perturbations.shape[1:]) != tuple(x.shape):
            raise invalid_parameter(
                "perturbations", owner, f"a tensor of shape (n_samples, {', '.join(map(str, x.shape))})", perturbations
            )
        n_samples = perturbations.shape[0]
        noise_std = math.nan
    else:
        n_samples = check_int(n_samples, "n_samples", owner, minimum=1)
        noise_std = check_float(noise_std, "noise_std", owner, minimum=0.0, strict_minimum=True)
    values = resolve_attributions(
        model, x, targets, attributions, owner, output_fn=output_fn, max_batch=prepared.max_batch
    ).reshape(batch, -1)
    generator = torch.Generator().manual_seed(seed)
    original = selected_scores(prepared.forward, x, targets, output, prepared.max_batch).double()
    check_allocation(n_samples, 2 * batch, torch.float64, x.device, name="n_samples", owner=owner)
    total_rows = n_samples * batch
    predicted = torch.empty(total_rows, dtype=torch.float64, device=x.device)
    drops = torch.empty(total_rows, dtype=torch.float64, device=x.device)
    flat_x = x.reshape(batch, -1)
    for start in range(0, total_rows, prepared.max_batch):
        rows = torch.arange(start, min(start + prepared.max_batch, total_rows), device=x.device)
        example = rows % batch
        if perturbations is not None:
            # rows are sample-major (row = sample * batch + example): a contiguous slice, no gather
            noise = perturbations.reshape(total_rows, -1)[start : start + len(rows)].to(x.device, x.dtype)
        else:
            noise = (torch.randn(len(rows), flat_x.shape[1], generator=generator) * noise_std).to(x.device, x.dtype)
        points = (flat_x[example] - noise).reshape(len(rows), *x.shape[1:])
        score = selected_scores(prepared.forward, points, targets[example], output, prepared.max_batch).double()
        predicted[start : start + len(rows)] = (values[example] * noise).sum(dim=1).double()
        drops[start : start + len(rows)] = original[example] - score
    predicted = predicted.reshape(n_samples, batch).t()
    drops = drops.reshape(n_samples, batch).t()
    if normalise:
        denominator = predicted.pow(2).sum(dim=1)
        beta = torch.where(denominator > 0, (predicted * drops).sum(dim=1) / denominator, torch.zeros_like(denominator))
        predicted = predicted * beta.unsqueeze(1)
    squared = (predicted - drops).pow(2)
    per_example = squared.mean(dim=1)
    per_example_error = (
        squared.std(dim=1) / math.sqrt(n_samples) if n_samples > 1 else torch.full_like(per_example, math.nan)
    )
    mean, error, _ = mean_and_standard_error(per_example)
    return Infidelity(
        values=per_example.cpu(),
        per_example_standard_error=per_example_error.cpu(),
        mean=mean,
        standard_error=error,
        n_samples=n_samples,
        noise_std=noise_std,
        normalise=normalise,
        output=output,
        model_evaluations=prepared.evaluations + batch + total_rows,
        note=guard_note(model),
    )
