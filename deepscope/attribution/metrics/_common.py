"""Shared helpers of the attribution metrics: validation, attributions on demand, scores, ranks, errors.

Every metric works on one target per example: ``target`` is None (the predicted class), an int,
or a ``(batch,)`` tensor of ints. ``attributions`` is a tensor shaped like ``inputs``, None
(saliency, computed lazily through :data:`deepscope.attribution.METHODS`), a method name, or a
callable ``(model, inputs, target=...) -> Attribution | Tensor``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deepscope.attribution._base import DEFAULT_MAX_BATCH, OutputFn, Prepared, evaluate_outputs, prepare
from deepscope.attribution._registry import method_named
from deepscope.errors import DataError, invalid_parameter

__all__ = [
    "AttributionSource",
    "DEFAULT_MAX_BATCH",
    "prepare_single_target",
    "resolve_attributions",
    "attribution_function",
    "selected_scores",
    "average_ranks",
    "row_pearson",
    "row_spearman",
    "mean_and_standard_error",
    "check_output",
]

AttributionSource = torch.Tensor | str | Callable[..., Any] | None

OUTPUTS = ("probability", "logit")


def check_output(output: Any, owner: str) -> str:
    """The score a metric reads from the model: "probability" (softmax) or "logit"."""
    if output not in OUTPUTS:
        raise invalid_parameter("output", owner, "one of 'probability', 'logit'", output)
    return output


def prepare_single_target(
    model: nn.Module,
    inputs: Any,
    target: Any,
    *,
    owner: str,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Prepared:
    """Validate model/inputs/target like the methods do, but refuse several targets at once."""
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    if prepared.multi:
        raise invalid_parameter("target", owner, "None, an int or a (batch,) tensor of ints (one target)", target)
    return prepared


def attribution_function(
    method: Any, owner: str, name: str = "method", *, output_fn: OutputFn | None = None, max_batch: int | None = None
) -> Callable[..., torch.Tensor]:
    """``f(model, inputs, targets) -> values`` for a method name in METHODS or a callable.

    A named method also receives ``output_fn`` and ``max_batch`` when it accepts them; a callable
    is called as ``method(model, inputs, target=targets)``.
    """
    options: dict[str, Any] = {}
    if isinstance(method, str):
        function = method_named(method, owner, name)[1]
        accepted = inspect.signature(function).parameters
        given = {"output_fn": output_fn, "max_batch": max_batch}
        options = {key: value for key, value in given.items() if value is not None and key in accepted}
    elif callable(method):
        function = method
    else:
        raise invalid_parameter(name, owner, "a method name or a callable (model, inputs, target=...)", method)

    def explain(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        result = function(model, inputs, target=targets, **options)
        values = result if isinstance(result, torch.Tensor) else getattr(result, "values", result)
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != tuple(inputs.shape):
            raise invalid_parameter(name, owner, f"a method returning values of shape {tuple(inputs.shape)}", values)
        return values.detach().to(inputs.dtype)

    return explain


def resolve_attributions(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    attributions: AttributionSource,
    owner: str,
    *,
    output_fn: OutputFn | None = None,
    max_batch: int | None = None,
) -> torch.Tensor:
    """Attributions shaped like ``inputs``: given, or computed (None means "saliency")."""
    if isinstance(attributions, torch.Tensor):
        if tuple(attributions.shape) != tuple(inputs.shape):
            raise invalid_parameter("attributions", owner, f"a tensor of shape {tuple(inputs.shape)}", attributions)
        values = attributions.detach().to(device=inputs.device, dtype=inputs.dtype)
    else:
        source = getattr(attributions, "values", None)
        if isinstance(source, torch.Tensor):  # an Attribution result
            return resolve_attributions(model, inputs, targets, source, owner)
        method = "saliency" if attributions is None else attributions
        explain = attribution_function(method, owner, "attributions", output_fn=output_fn, max_batch=max_batch)
        values = explain(model, inputs, targets)
    if not bool(torch.isfinite(values).all()):
        raise DataError(f"The 'attributions' of {owner} contain NaN or infinite values.")
    return values


def selected_scores(
    forward: Callable[[torch.Tensor], torch.Tensor],
    points: torch.Tensor,
    targets: torch.Tensor,
    output: str,
    max_batch: int,
) -> torch.Tensor:
    """The target's score for each row: softmax probability (sigmoid for one output) or the logit."""
    outputs = evaluate_outputs(forward, points, max_batch)
    if output == "probability":
        outputs = torch.sigmoid(outputs) if outputs.shape[1] == 1 else torch.softmax(outputs, dim=1)
    return outputs.gather(1, targets.reshape(-1, 1)).squeeze(1)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks along the last dimension, ties given their average rank (like scipy's rankdata)."""
    ordered, _ = torch.sort(values, dim=-1)
    below = torch.searchsorted(ordered, values.contiguous(), right=False)
    at_most = torch.searchsorted(ordered, values.contiguous(), right=True)
    return (below + at_most + 1).to(torch.float64) / 2.0


def row_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (NaN where a row is constant)."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    denominator = a.norm(dim=-1) * b.norm(dim=-1)
    correlation = (a * b).sum(dim=-1) / denominator
    return torch.where(denominator > 0, correlation, torch.full_like(correlation, math.nan))


def row_spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per row (Pearson of tie-averaged ranks)."""
    return row_pearson(average_ranks(a), average_ranks(b))


def mean_and_standard_error(values: torch.Tensor) -> tuple[float, float, int]:
    """Mean, standard error of the mean and count over the finite entries of ``values``."""
    finite = values[torch.isfinite(values)].to(torch.float64)
    count = int(finite.numel())
    if count == 0:
        return math.nan, math.nan, 0
    mean = float(finite.mean())
    error = float(finite.std(unbiased=True) / math.sqrt(count)) if count > 1 else math.nan
    return mean, error, count
