"""Integrated gradients with Riemann or Gauss-Legendre quadrature and adaptive step counts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._validation import check_choice, check_float, check_int
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    chunk_starts,
    evaluate_selected,
    finish,
    prepare,
    prepare_baseline,
    relative_completeness_error,
)
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis

__all__ = ["integrated_gradients", "quadrature", "RULES"]

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes α in [0, 1] and weights of a ``steps``-point rule for ∫₀¹ g(α) dα (Captum's conventions).

    Example:
        >>> alphas, weights = quadrature("riemann_trapezoid", 3)
        >>> alphas.tolist(), weights.tolist()
        ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])
    """
    check_choice(rule, "rule", "integrated_gradients", RULES)
    alphas, weights = _quadrature(rule, steps)
    return alphas.clone(), weights.clone()


@functools.lru_cache(maxsize=64)
def _quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = steps
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (nodes + 1.0)), torch.from_numpy(0.5 * weights)
    if rule == "riemann_trapezoid":
        if n < 2:
            raise invalid_parameter("steps", "integrated_gradients", "an int >= 2 for the trapezoid rule", n)
        weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        weights[0] = weights[-1] = 0.5 / (n - 1)
        return torch.linspace(0.0, 1.0, n, dtype=torch.float64), weights
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if rule == "riemann_left":
        return torch.linspace(0.0, 1.0 - 1.0 / n, n, dtype=torch.float64), weights
    if rule == "riemann_right":
        return torch.linspace(1.0 / n, 1.0, n, dtype=torch.float64), weights
    return torch.linspace(0.5 / n, 1.0 - 0.5 / n, n, dtype=torch.float64), weights


def path_gradient_sum(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    targets: torch.Tensor,
    alphas: torch.Tensor,
    weights: torch.Tensor,
    max_batch: int,
    progress: bool = False,
) -> torch.Tensor:
    """Σ_s w_s ∇F(x' + α_s (x − x')) per example and target, chunked over steps × examples.

    Only ``max_batch`` path points exist at any time, so memory is bounded whatever the step count.

    Args:
        inputs, baseline: (n, *features); targets: (T, n); alphas, weights: (m,).

    Returns:
        (T, n, *features) weighted gradient sums.
    """
    n, m = inputs.shape[0], alphas.shape[0]
    n_targets = targets.shape[0]
    alphas = alphas.to(device=inputs.device, dtype=inputs.dtype)
    weights = weights.to(device=inputs.device, dtype=inputs.dtype)
    delta = inputs - baseline
    total = torch.zeros((n_targets, *inputs.shape), dtype=inputs.dtype, device=inputs.device)
    view = (-1,) + (1,) * (inputs.dim() - 1)
    for start in chunk_starts(n * m, max_batch, progress, f"integrated gradients, {m} steps"):
        flat = torch.arange(start, min(start + max_batch, n * m), device=inputs.device)
        example, step = flat // m, flat % m
        points = (baseline[example] + alphas[step].view(view) * delta[example]).requires_grad_(True)
        with torch.enable_grad():
            outputs = forward(points)
            for t in range(n_targets):
                selected = outputs.gather(1, targets[t, example].unsqueeze(1)).sum()
                (grad,) = torch.autograd.grad(selected, points, retain_graph=t < n_targets - 1)
                total[t].index_add_(0, example, grad * weights[step].view(view))
    return total


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"steps": 8})
def integrated_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    baseline: Any = None,
    steps: int | None = 50,
    rule: str = "gausslegendre",
    tol: float = 0.01,
    initial_steps: int = 8,
    max_steps: int = 1024,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    progress: bool = False,
) -> Attribution:
    """Integrated gradients, IG_i = (x_i − x'_i) ∫₀¹ ∂F(x' + α(x − x'))/∂x_i dα (Sundararajan et al., 2017).

    The integral is a quadrature (``rule``: Gauss-Legendre or Riemann left/right/middle/trapezoid,
    nodes and weights as in Captum, except that the trapezoid rule uses the textbook weights
    1/(m−1) with halved end points; Captum's trapezoid weights are 1/m, so Captum's result is ours
    times (m−1)/m). Completeness, Σ_i IG_i = F(x) − F(x'), holds for the exact
    integral; its relative error |Σ IG − ΔF| / |ΔF| is reported per example. With ``steps=None``
    the step count is chosen per example: start at ``initial_steps`` and double (only for the
    examples still above ``tol``) until the relative error is below ``tol`` or ``max_steps``.

    Args:
        model: the classifier; ``model(inputs)`` gives ``(batch, classes)``.
        inputs: ``(batch, *features)`` float tensor.
        target: None (predicted class), an int, ``(batch,)`` ints, or several targets.
        baseline: reference x' (None = zeros), a number or a tensor shaped like the inputs.
        steps: quadrature points per example, or None for the adaptive choice.
        rule: "gausslegendre" (default), "riemann_left", "riemann_right", "riemann_middle",
            "riemann_trapezoid".
        tol: target relative completeness error for ``steps=None``.
        initial_steps, max_steps: the adaptive schedule's start and cap.
        output_fn: maps a tuple/dict model output to ``(batch, classes)``.
        max_batch: rows (path points) per forward pass: the memory budget.
        progress: show a tqdm bar over the chunks.

    Returns:
        An :class:`Attribution`; diagnostics ``completeness_error`` (relative), ``delta`` (ΔF) and
        ``steps`` per example, and ``converged`` (error < tol) for the adaptive mode.

    Example:
        >>> net = torch.nn.Linear(4, 2)
        >>> a = integrated_gradients(net, torch.randn(3, 4), target=1, steps=None, tol=1e-4)
        >>> bool((a.diagnostics["completeness_error"] < 1e-4).all())
        True
    """
    owner = "integrated_gradients"
    check_choice(rule, "rule", owner, RULES)
    if steps is not None:
        check_int(steps, "steps", owner, minimum=2 if rule == "riemann_trapezoid" else 1)
    tol = check_float(tol, "tol", owner, minimum=0.0, strict_minimum=True)
    check_int(initial_steps, "initial_steps", owner, minimum=2)
    check_int(max_steps, "max_steps", owner, minimum=initial_steps)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, forward, targets = prepared.inputs, prepared.forward, prepared.targets
    reference = prepare_baseline(baseline, x, owner)
    n = x.shape[0]
    at_input = evaluate_selected(forward, x, targets, prepared.max_batch)
    at_baseline = evaluate_selected(forward, reference, targets, prepared.max_batch)
    difference = at_input - at_baseline
    evaluations = prepared.evaluations + 2 * n
    delta = (x - reference).unsqueeze(0)

    def attribute(rows: torch.Tensor, count: int) -> torch.Tensor:
        alphas, weights = quadrature(rule, count)
        sums = path_gradient_sum(
            forward, x[rows], reference[rows], targets[:, rows], alphas, weights, prepared.max_batch, progress
        )
        return sums * delta[:, rows]

    if steps is not None:
        values = attribute(torch.arange(n, device=x.device), steps)
        evaluations += n * steps
        used = torch.full((n,), steps)
    else:
        values = torch.zeros((targets.shape[0], *x.shape), dtype=x.dtype, device=x.device)
        used = torch.zeros(n, dtype=torch.long)
        pending = torch.arange(n, device=x.device)
        count = initial_steps
        while pending.numel() > 0:
            values[:, pending] = attribute(pending, count)
            evaluations += pending.numel() * count
            used[pending.cpu()] = count
            totals = values[:, pending].flatten(2).sum(2)
            error = relative_completeness_error(totals, at_input[:, pending], at_baseline[:, pending])
            error = error.max(dim=0).values
            count *= 2
            if count > max_steps:
                break
            pending = pending[error >= tol]
    totals = values.flatten(2).sum(2)
    error = relative_completeness_error(totals, at_input, at_baseline)
    diagnostics: dict[str, Any] = {
        "completeness_error": error,
        "delta": difference,
        "steps": used.unsqueeze(0).expand_as(error).clone(),
    }
    if steps is None:
        diagnostics["converged"] = error < tol
    return finish(
        model,
        values=values,
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics=diagnostics,
        evaluations=evaluations,
        options={
            "steps": steps,
            "rule": rule,
            "tol": tol,
            "initial_steps": initial_steps,
            "max_steps": max_steps,
            "max_batch": prepared.max_batch,
        },
    )
