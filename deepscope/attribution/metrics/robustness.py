"""Robustness of an attribution method: max-sensitivity (Yeh et al. 2019).

SENS_max(Φ, f, x, r) = max_{‖y − x‖_∞ ≤ r} ‖Φ(f, y) − Φ(f, x)‖, estimated by Monte Carlo with
``n_samples`` points y drawn uniformly from the L∞ ball (as Captum's ``sensitivity_max``); with
``normalise=True`` (Captum's convention) the norm is divided by ‖Φ(f, x)‖ (by 1 where that is 0).
The target class is held fixed at the unperturbed input's target.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_float, check_int
from deepscope.attribution._base import guard_note
from deepscope.attribution.metrics._common import (
    DEFAULT_MAX_BATCH,
    attribution_function,
    mean_and_standard_error,
    prepare_single_target,
)
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["MaxSensitivity", "max_sensitivity"]


@dataclasses.dataclass(frozen=True)
class MaxSensitivity(Result):
    """Max-sensitivity per example (0 = the map does not move inside the ball).

    Attributes:
        values: ``(batch,)`` the largest (relative) change seen over ``n_samples`` draws; a Monte-Carlo
            lower bound on the true maximum.
        mean, standard_error: over the examples. radius, n_samples, normalise: the settings.
        attribution_calls: input rows explained (each explanation costs its method's evaluations).
    """

    values: torch.Tensor
    mean: float
    standard_error: float
    radius: float
    n_samples: int
    normalise: bool
    method: str
    attribution_calls: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "metric": "max-sensitivity",
                "method": self.method,
                "mean": self.mean,
                "standard_error": self.standard_error,
                "examples": int(self.values.numel()),
                "radius": self.radius,
                "n_samples": self.n_samples,
            }
        ]


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"n_samples": 3})
def max_sensitivity(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    method: Any = "saliency",
    radius: float = 0.02,
    n_samples: int = 10,
    perturbations: torch.Tensor | None = None,
    normalise: bool = True,
    seed: int = 0,
    output_fn: Any = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> MaxSensitivity:
    """Max-sensitivity of an attribution method (Yeh et al. 2019) by Monte Carlo in the L∞ ball.

    Args:
        model: classifier, ``model(x) -> (batch, classes)``.
        inputs: ``(batch, *features)``. target: None (predicted class), an int or ``(batch,)`` ints.
        method: a name in ``deepscope.attribution.METHODS`` or a callable
            ``(model, inputs, target=...) -> Attribution | Tensor``.
        radius: the L∞ radius r. n_samples: points drawn per example.
        perturbations: optional explicit offsets y − x of shape ``(n_samples, batch, *features)``.
        normalise: divide by ‖Φ(x)‖ (Captum's convention). seed: seed of the uniform sampler.
        output_fn: maps a tuple/dict output to class scores. max_batch: rows explained at once.

    Returns:
        :class:`MaxSensitivity`.

    Example:
        >>> net = torch.nn.Linear(4, 2)   # saliency of a linear model never changes
        >>> max_sensitivity(net, torch.randn(3, 4), 0, n_samples=2).mean
        0.0
    """
    owner = "max_sensitivity"
    prepared = prepare_single_target(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets[0]
    batch = x.shape[0]
    if perturbations is not None:
        if not isinstance(perturbations, torch.Tensor) or tuple(perturbations.shape[1:]) != tuple(x.shape):
            raise invalid_parameter(
                "perturbations", owner, f"a tensor of shape (n_samples, {', '.join(map(str, x.shape))})", perturbations
            )
        n_samples = perturbations.shape[0]
        radius = float(perturbations.abs().max())
    else:
        n_samples = check_int(n_samples, "n_samples", owner, minimum=1)
        radius = check_float(radius, "radius", owner, minimum=0.0, strict_minimum=True)
    explain = attribution_function(method, owner, output_fn=output_fn, max_batch=prepared.max_batch)
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    original = explain(model, x, targets).reshape(batch, -1)
    scale = original.norm(dim=1) if normalise else torch.ones(batch, dtype=x.dtype, device=x.device)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    generator = torch.Generator().manual_seed(seed)
    worst = torch.zeros(batch, dtype=torch.float64, device=x.device)
    samples_per_chunk = max(1, prepared.max_batch // batch)
    for start in range(0, n_samples, samples_per_chunk):
        count = min(samples_per_chunk, n_samples - start)
        if perturbations is not None:
            offsets = perturbations[start : start + count].to(x.device, x.dtype)
        else:
            offsets = ((torch.rand(count, *x.shape, generator=generator) * 2 - 1) * radius).to(x.device, x.dtype)
        points = (x.unsqueeze(0) + offsets).reshape(count * batch, *x.shape[1:])
        moved = explain(model, points, targets.repeat(count)).reshape(count, batch, -1)
        change = (moved - original.unsqueeze(0)).norm(dim=2) / scale.unsqueeze(0)
        worst = torch.maximum(worst, change.max(dim=0).values.double())
    mean, error, _ = mean_and_standard_error(worst)
    return MaxSensitivity(
        values=worst.cpu(),
        mean=mean,
        standard_error=error,
        radius=radius,
        n_samples=n_samples,
        normalise=normalise,
        method=name,
        attribution_calls=batch * (n_samples + 1),
        note=guard_note(model),
    )
