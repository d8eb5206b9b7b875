"""Gradient noise scale B_simple from per-example gradients (McCandlish, Kaplan, Amodei et al., 2018).

``B_simple = tr(Σ) / |G|²``, where ``G`` is the true gradient and ``Σ`` the per-example gradient
covariance: the batch size at which the gradient noise is comparable to the signal (the
critical batch size is of this order). From ``n`` per-example gradients ``g_i`` with mean ``ĝ``:
``tr Σ̂ = Σ‖g_i − ĝ‖²/(n − 1)`` and the unbiased ``|G|² ≈ |ĝ|² − tr Σ̂ / n``; when the latter is
not positive the batch cannot resolve the gradient and ``B_simple`` is reported as infinite.

Example:
    >>> gradient_noise_scale(problem, max_samples=128).noise_scale  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from deepscope import _inputs
from deepscope._outputs import OutputFn, select_output
from deepscope._validation import check_int
from deepscope.errors import DataError, UnsupportedModelError
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["NoiseScaleResult", "gradient_noise_scale", "noise_scale_from_batch"]


@dataclasses.dataclass(frozen=True)
class NoiseScaleResult(Result):
    """``B_simple`` with the gradient-noise trace and squared gradient norm it is made of."""

    noise_scale: float
    trace_covariance: float
    gradient_norm_squared: float
    biased_gradient_norm_squared: float
    n_samples: int
    note: str = ""


def noise_scale_from_batch(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    inputs: _inputs.Inputs,
    targets: torch.Tensor,
    chunk_size: int = 64,
    output_fn: OutputFn | None = None,
) -> NoiseScaleResult:
    """B_simple from per-example gradients (``torch.func.vmap`` of ``grad``) on one batch.

    A model ``vmap`` cannot trace (a forward that branches on its inputs' values, as HuggingFace
    models do on the attention mask) gets the same gradients one example at a time.

    ``inputs`` is a tensor, integer token ids or a dict of tensors (``model(**inputs)``);
    ``output_fn`` picks the scores the loss reads from a model that returns a dict or tuple.
    """
    if len(targets) < 2:
        raise DataError("The gradient noise scale needs at least 2 examples.")
    params = {n: p.detach() for n, p in params.items()}
    buffers = {n: b.detach().clone() for n, b in buffers.items()}

    def single_loss(p: dict[str, torch.Tensor], x: _inputs.Inputs, y: torch.Tensor) -> torch.Tensor:
        if _inputs.is_mapping(x):
            one = {name: value[None] for name, value in x.items()}  # type: ignore[union-attr]
            output = torch.func.functional_call(model, (p, buffers), (), one, strict=False)
        else:
            output = torch.func.functional_call(model, (p, buffers), (x[None],), strict=False)  # type: ignore[index]
        return loss_fn(select_output(output, output_fn, "gradient_noise_scale"), y[None])

    gradient = torch.func.grad(single_loss)
    vectorised = torch.func.vmap(gradient, (None, 0, 0))
    looped = [False]  # set once vmap refuses the model (data-dependent control flow, as HF attention masks)

    def per_example(p: dict[str, torch.Tensor], xs: _inputs.Inputs, ys: torch.Tensor) -> dict[str, torch.Tensor]:
        if not looped[0]:
            try:
                return vectorised(p, xs, ys)
            except RuntimeError as error:
                if "vmap" not in str(error):
                    raise
                looped[0] = True
        # the same per-example gradients, one example at a time
        each = [gradient(p, _example(xs, i), ys[i]) for i in range(len(ys))]
        return {name: torch.stack([g[name] for g in each]) for name in p}

    total = torch.zeros((), dtype=torch.float64)
    squares = torch.zeros((), dtype=torch.float64)
    sums = None
    for start in range(0, len(targets), chunk_size):
        batch = _inputs.slice_rows(inputs, start, start + chunk_size)
        grads = per_example(params, batch, targets[start : start + chunk_size])
        flat = torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1).double()
        squares += (flat**2).sum()
        sums = flat.sum(0) if sums is None else sums + flat.sum(0)
        total += flat.shape[0]
    n = int(total)
    mean = sums / n
    biased = float(mean @ mean)
    trace = float((squares - n * biased) / (n - 1))
    unbiased = biased - trace / n
    if not math.isfinite(trace):
        raise DataError("Per-example gradients are not finite.")
    scale = trace / unbiased if unbiased > 0 else math.inf
    return NoiseScaleResult(
        noise_scale=scale,
        trace_covariance=trace,
        gradient_norm_squared=unbiased,
        biased_gradient_norm_squared=biased,
        n_samples=n,
    )


def _example(x: _inputs.Inputs, index: int) -> _inputs.Inputs:
    """Example ``index`` without its batch dimension (what ``vmap`` hands the per-example loss)."""
    return {k: v[index] for k, v in x.items()} if _inputs.is_mapping(x) else x[index]  # type: ignore[union-attr,index]


@analysis(takes="problem", family="dynamics", example_kwargs={"max_samples": 8})
def gradient_noise_scale(problem: Problem, *, max_samples: int = 256, split: str = "train") -> NoiseScaleResult:
    """``B_simple = tr(Σ)/|G|²`` of the problem's loss on its first ``max_samples`` samples.

    McCandlish et al. (2018), with the unbiased ``|G|²`` estimate.

    Args:
        problem: a :class:`deepscope.Problem`.
        max_samples: number of examples whose per-example gradients are computed.
        split: "train" or "test".

    Returns:
        A :class:`NoiseScaleResult`.

    Example:
        >>> gradient_noise_scale(problem).noise_scale  # doctest: +SKIP
    """
    check_int(max_samples, "max_samples", "gradient_noise_scale", minimum=2)
    params = problem.parameters(trainable_only=True)
    if not params:
        raise UnsupportedModelError("gradient_noise_scale found no trainable parameters.")
    x, y = problem.tensors(split, max_samples=max_samples)
    result = noise_scale_from_batch(
        problem.model, problem.criterion, params, problem.buffers(), x, y, output_fn=problem.output_fn
    )
    from deepscope.guard import current_guard_report

    report = current_guard_report(problem.model)
    return dataclasses.replace(result, note=report.note if report is not None else "")
