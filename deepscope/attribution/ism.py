"""In-silico mutagenesis: the score change of every single-letter substitution in a one-hot sequence."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    chunk_starts,
    evaluate_outputs,
    finish,
    prepare,
)
from deepscope.attribution._registry import ReportDefaults, attribution_method, is_one_hot
from deepscope.errors import DataError
from deepscope.registry import analysis

__all__ = ["ism"]


@attribution_method(
    aliases=(),
    claimed_axioms={"dummy", "implementation_invariance", "linearity"},
    report=ReportDefaults(order=6, shown_when=is_one_hot),
)
@analysis(takes="model_inputs", family="attribution", fixture="sequence")
def ism(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    progress: bool = False,
) -> Attribution:
    """In-silico mutagenesis (Alipanahi et al., 2015; Zhou & Troyanskaya, 2015).

    values[a, l] = F(x with position l mutated to letter a) − F(x); the observed letter gets 0.
    ``diagnostics["position_importance"]`` is the per-position mean effect of a mutation
    ``−mean_{a ≠ x_l} values[a, l]`` (positive: mutations hurt the score).

    Args:
        model, target, output_fn, max_batch: as for every method.
        inputs: one-hot sequences ``(batch, alphabet, length)`` (each column one 1, the rest 0).
        progress: show a tqdm bar over the chunks.

    Returns:
        An :class:`Attribution` shaped like the inputs; ``alphabet × length × batch`` extra passes.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 1))
        >>> x = torch.nn.functional.one_hot(torch.tensor([[0, 1]]), 4).permute(0, 2, 1).float()
        >>> ism(net, x, target=0).values.shape
        torch.Size([1, 4, 2])
    """
    owner = "ism"
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch, gradient=False)
    x, targets = prepared.inputs, prepared.targets
    if x.dim() != 3 or not bool(((x == 0) | (x == 1)).all()) or not bool((x.sum(1) == 1).all()):
        raise DataError(
            "The 'inputs' of ism must be one-hot sequences of shape (batch, alphabet, length): each position "
            f"has exactly one 1 and the rest 0. Got a tensor of shape {tuple(x.shape)} that is not one-hot."
        )
    n, letters, length = x.shape
    reference = evaluate_outputs(prepared.forward, x, prepared.max_batch).gather(1, targets.t()).t()  # (T, n)
    mutations = letters * length
    values = torch.empty(targets.shape[0], n, mutations, dtype=x.dtype, device=x.device)
    for start in chunk_starts(n * mutations, prepared.max_batch, progress, "in-silico mutagenesis"):
        flat = torch.arange(start, min(start + prepared.max_batch, n * mutations), device=x.device)
        example, mutation = flat // mutations, flat % mutations
        letter, position = mutation // length, mutation % length
        mutated = x[example].clone()
        rows = torch.arange(len(flat), device=x.device)
        mutated[rows, :, position] = 0
        mutated[rows, letter, position] = 1
        outputs = evaluate_outputs(prepared.forward, mutated, prepared.max_batch)
        values[:, example, mutation] = outputs.gather(1, targets[:, example].t()).t() - reference[:, example]
    values = values.view(targets.shape[0], n, letters, length) * (1 - x).unsqueeze(0)
    position_importance = -values.sum(2) / max(letters - 1, 1)
    return finish(
        model,
        values=values,
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics={"position_importance": position_importance},
        evaluations=prepared.evaluations + n * (mutations + 1),
        options={"max_batch": prepared.max_batch},
    )
