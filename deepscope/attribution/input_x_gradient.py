"""Input × gradient: the first-order Taylor contribution of each feature."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    evaluate_selected,
    finish,
    prepare,
    relative_completeness_error,
    selected_gradients,
)
from deepscope.attribution._multi_input import MultiInputAttribution, packed_baseline, packed_call, unpacked
from deepscope.attribution._registry import ReportDefaults, attribution_method
from deepscope.registry import analysis

__all__ = ["input_x_gradient"]


@attribution_method(
    aliases=("ixg",),
    claimed_axioms={"dummy", "symmetry", "implementation_invariance", "linearity"},
    report=ReportDefaults(order=8, full_only=True, axiom_budget="full", axiom_order=2),
    takes=("tensor", "tuple"),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn")
def input_x_gradient(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    target: Any = None,
    *,
    baseline: Any = None,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution | MultiInputAttribution:
    """Input × gradient, (x − x') ⊙ ∂F/∂x (Shrikumar et al., 2016; with x' = 0 as in Captum).

    For a linear model F(x) = w·x + b this equals w ⊙ (x − x') and is complete; for a ReLU
    network without biases and x' = 0 it sums to F(x) (Euler's theorem for homogeneous functions).

    Args:
        model: the classifier; ``model(inputs)`` gives ``(batch, classes)``.
        inputs: ``(batch, *features)`` float tensor, or a tuple of such tensors (same batch length)
            for a model with several inputs, ``model(x1, x2, ...)``.
        target: None (predicted class), an int, ``(batch,)`` ints, or several targets.
        baseline: reference x' (None = zeros): a number or a tensor shaped like the inputs; for a
            tuple of inputs a number (for each) or a tuple of one baseline per input.
        output_fn: maps a tuple/dict model output to ``(batch, classes)``.
        max_batch: rows per forward pass.

    Returns:
        An :class:`Attribution`; diagnostics hold ``completeness_error`` (relative, see
        ``integrated_gradients``), which is small only for (locally) linear models. For a tuple of
        inputs a :class:`~deepscope.attribution._multi_input.MultiInputAttribution` (one tensor per
        input; the completeness error is over all inputs together).

    Example:
        >>> net = torch.nn.Linear(3, 1, bias=False)
        >>> a = input_x_gradient(net, torch.ones(2, 3), target=0)
        >>> bool(torch.allclose(a.values.sum(1), net(torch.ones(2, 3))[:, 0]))
        True
    """
    owner = "input_x_gradient"
    packing, inputs, runner = packed_call(model, inputs, owner)
    prepared = prepare(runner, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    reference = packed_baseline(baseline, prepared.inputs, packing, owner)
    selected, gradients = selected_gradients(prepared.forward, prepared.inputs, prepared.targets, prepared.max_batch)
    values = (prepared.inputs - reference).unsqueeze(0) * gradients
    at_baseline = evaluate_selected(prepared.forward, reference, prepared.targets, prepared.max_batch)
    totals = values.flatten(2).sum(2)
    error = relative_completeness_error(totals, selected, at_baseline)
    result = finish(
        model,
        values=values,
        targets=prepared.targets,
        multi=prepared.multi,
        method=owner,
        diagnostics={"completeness_error": error},
        evaluations=prepared.evaluations + 2 * prepared.inputs.shape[0],
        options={"max_batch": prepared.max_batch},
    )
    return unpacked(result, packing)
