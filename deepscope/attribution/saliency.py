"""Saliency: the gradient of the target score with respect to the input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope.attribution._base import DEFAULT_MAX_BATCH, Attribution, OutputFn, finish, prepare, selected_gradients
from deepscope.attribution._multi_input import MultiInputAttribution, packed_call, unpacked
from deepscope.attribution._registry import ReportDefaults, attribution_method
from deepscope.registry import analysis

__all__ = ["saliency"]


@attribution_method(
    aliases=(),
    claimed_axioms={"implementation_invariance"},
    report=ReportDefaults(order=0, axiom_budget="full", axiom_order=4),
    takes=("tensor", "tuple"),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn")
def saliency(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    target: Any = None,
    *,
    absolute: bool = True,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution | MultiInputAttribution:
    """Saliency map: the input gradient of the target score, |∂F/∂x| (Simonyan et al., 2014).

    Args:
        model: the classifier; ``model(inputs)`` gives ``(batch, classes)`` (see ``output_fn``).
        inputs: ``(batch, *features)`` float tensor, or a tuple of such tensors (same batch length)
            for a model with several inputs, ``model(x1, x2, ...)``.
        target: None (predicted class), an int, one per example (a list or tensor of ``batch`` ints),
            or several per example (2-D: ``(n_targets, batch)`` or ``(n_targets, 1)``, e.g. ``[[0], [2]]``).
        absolute: take the absolute value (Captum's default); False keeps the signed gradient.
        output_fn: maps a tuple/dict model output to ``(batch, classes)``.
        max_batch: rows per forward pass.

    Returns:
        An :class:`Attribution` with ``values`` shaped like ``inputs``; for a tuple of inputs a
        :class:`~deepscope.attribution._multi_input.MultiInputAttribution` (one tensor per input).

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> saliency(net, torch.ones(1, 3), target=0).values.shape
        torch.Size([1, 3])
    """
    packing, inputs, runner = packed_call(model, inputs, "saliency")
    prepared = prepare(runner, inputs, target, owner="saliency", output_fn=output_fn, max_batch=max_batch)
    _, gradients = selected_gradients(prepared.forward, prepared.inputs, prepared.targets, prepared.max_batch)
    values = gradients.abs() if absolute else gradients
    result = finish(
        model,
        values=values,
        targets=prepared.targets,
        multi=prepared.multi,
        method="saliency",
        diagnostics={},
        evaluations=prepared.evaluations + prepared.inputs.shape[0],
        options={"absolute": absolute, "max_batch": prepared.max_batch},
    )
    return unpacked(result, packing)
