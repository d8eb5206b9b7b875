"""In-silico mutagenesis: the score change of every single-letter substitution in a one-hot sequence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._outputs import check_output_fn, select_output
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    check_max_batch,
    chunk_starts,
    finish,
    prepare_inputs,
    resolve_targets,
)
from deepscope.attribution._ism_local import plan_local, reference_pass
from deepscope.attribution._registry import ReportDefaults, attribution_method, is_one_hot
from deepscope.errors import DataError, UnsupportedModelError, invalid_parameter
from deepscope.registry import analysis

__all__ = ["ism"]

_OWNER = "ism"
_CHUNK = 256  # mutants per model call: past a few hundred rows a CPU convolution gains nothing more
_GROUP = 64  # sequences whose reference activations are cached at once by the receptive-field path
# |fast − full| allowed on the check batch, relative to the largest |output|: the window convolutions
# sum the same products in another order (float32 ~1e-6 relative); a planning error is O(1)
_CHECK_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}


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
    args: Sequence[torch.Tensor] = (),
    start: int = 0,
    end: int | None = None,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    fast: bool = True,
    progress: bool = False,
) -> Attribution:
    """In-silico mutagenesis (Alipanahi et al., 2015; Zhou & Troyanskaya, 2015).

    values[a, l] = F(x with position l set to letter a) − F(x) for every position l in
    ``[start, end)``; the observed letter (an identity substitution, never run) and positions
    outside the span get 0. A position holding ``N`` (an all-zero column) is set to each of the
    four letters in turn, and the reference stays the sequence with its ``N``. That is
    ``3·(end − start) + 1`` forward passes per sequence (one more per ``N``), the same numbers as
    tangermeme's ``saturation_mutagenesis(..., raw_outputs=True)``.
    ``diagnostics["position_importance"]`` is ``−mean_a values[a, l]`` over the substitutions made
    at ``l`` (positive: mutations hurt the score).

    With ``fast=True`` (default) the model is traced with ``torch.fx`` and the convolutional part
    is recomputed only over the positions a substitution can change (fastISM, Nair et al. 2022;
    see :mod:`deepscope.attribution._ism_local`): exact, not approximate. A check batch of edits
    at both ends of the span is compared with full forward passes first; a model that cannot be
    traced, or whose check disagrees, runs full forward passes (``options["fast"]`` says which);
    so do models on another device than the CPU. The traced graph calls the model's submodules, not
    the model itself: forward hooks on the top-level module do not run on that path.

    Args:
        model, target, output_fn, max_batch: as for every method (``output_fn`` picks one output
            of a model with several, e.g. ``lambda out: out[1]`` for BPNet's count head).
        inputs: one-hot sequences ``(batch, alphabet, length)``: each column one 1 and the rest 0,
            or all 0 (``N``).
        args: extra model inputs passed after the sequence, ``model(x, *args)`` (control tracks),
            each with the batch as its first dimension; each mutant gets its sequence's rows.
        start, end: the span of positions to mutate (``end=None``: the sequence's end).
        fast: recompute only the receptive field of each substitution when the model allows it.
        progress: show a tqdm bar over the chunks.

    Returns:
        An :class:`Attribution` shaped like the inputs.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 1))
        >>> x = torch.nn.functional.one_hot(torch.tensor([[0, 1]]), 4).permute(0, 2, 1).float()
        >>> ism(net, x, target=0).values.shape
        torch.Size([1, 4, 2])
    """
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", _OWNER, "a torch.nn.Module", model)
    max_batch = check_max_batch(max_batch, _OWNER)
    check_output_fn(output_fn, _OWNER)
    if not isinstance(fast, bool):
        raise invalid_parameter("fast", _OWNER, "a bool", fast)
    x = prepare_inputs(model, inputs, _OWNER, gradient=False)
    if x.dim() != 3 or not bool(((x == 0) | (x == 1)).all()) or not bool((x.sum(1) <= 1).all()):
        raise DataError(
            "The 'inputs' of ism must be one-hot sequences of shape (batch, alphabet, length): each position "
            f"has one 1 and the rest 0, or all 0 for N. Got a tensor of shape {tuple(x.shape)} that is not one-hot."
        )
    n, letters, length = x.shape
    extra = _check_args(args, n, x)
    first, last = _check_span(start, end, length)

    def outputs(points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return _scores(model(points, *[a[rows] for a in extra]), output_fn, points.shape[0])

    def by_row(ids: torch.Tensor) -> torch.Tensor:  # targets: rows travel as indices, args follow
        rows = ids[:, 0].long()
        return outputs(x[rows], rows)

    ids = torch.arange(n, dtype=x.dtype, device=x.device).unsqueeze(1)
    targets, multi, evaluations = resolve_targets(by_row, ids, target, _OWNER, max_batch)
    chunk = min(max_batch, _CHUNK)
    with torch.no_grad():
        reference = torch.cat([by_row(ids[s : s + chunk]) for s in range(0, n, chunk)])
        # every substitution, position-major so a chunk holds neighbouring positions
        example, letter, position = torch.nonzero(x[:, :, first:last] == 0, as_tuple=True)
        position = position + first
        order = torch.argsort(position * n + example, stable=True)
        example, letter, position = example[order], letter[order], position[order]
        scores, how = _mutant_scores(
            model, x, extra, example, letter, position, outputs, output_fn, fast, chunk, progress
        )
    total = example.shape[0]
    values = torch.zeros(targets.shape[0], n, letters, length, dtype=x.dtype, device=x.device)
    picked = scores.gather(1, targets[:, example].t()).t() - reference.gather(1, targets.t()).t()[:, example]
    values[:, example, letter, position] = picked.to(x.dtype)
    made = torch.zeros(n, length, dtype=x.dtype, device=x.device)
    made[example, position] = (1 - x.sum(1))[example, position] + letters - 1
    position_importance = -values.sum(2) / made.clamp(min=1)
    return finish(
        model,
        values=values,
        targets=targets,
        multi=multi,
        method=_OWNER,
        diagnostics={"position_importance": position_importance, "path": how},
        evaluations=evaluations + n + total,
        options={"max_batch": max_batch, "start": first, "end": last, "fast": how == "receptive field"},
    )


def _scores(raw: Any, output_fn: OutputFn | None, rows: int) -> torch.Tensor:
    output = select_output(raw, output_fn, _OWNER)
    if output.dim() == 1:
        output = output.unsqueeze(1)
    if output.dim() != 2 or output.shape[0] != rows:
        raise UnsupportedModelError(
            f"{_OWNER}: the model output has shape {tuple(output.shape)}; expected (batch, classes) with batch = "
            f"{rows}. Pass output_fn to reduce it to scores, e.g. lambda out: out[0].flatten(1)."
        )
    return output


def _mutant_scores(model, x, extra, example, letter, position, outputs, output_fn, fast, chunk, progress):
    """Scores ``(mutants, classes)`` of every substitution, and which path computed them."""
    total = example.shape[0]
    plan = plan_local(model, len(extra)) if fast and total and x.device.type == "cpu" else None
    how = "full forward passes"
    if plan is not None:
        fast_scores, how = _fast_scores(plan, x, extra, example, letter, position, outputs, output_fn, chunk, progress)
        if fast_scores is not None:
            return fast_scores, how
    scores = []
    for s in chunk_starts(total, chunk, progress, "in-silico mutagenesis"):
        rows = torch.arange(s, min(s + chunk, total))
        scores.append(outputs(_mutants(x, example[rows], letter[rows], position[rows]), example[rows]))
    return torch.cat(scores) if scores else torch.zeros(0, 1, dtype=x.dtype), how


def _mutants(x: torch.Tensor, example: torch.Tensor, letter: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    mutated = x[example]
    rows = torch.arange(example.shape[0], device=x.device)
    mutated[rows, :, position] = 0
    mutated[rows, letter, position] = 1
    return mutated


def _fast_scores(plan, x, extra, example, letter, position, outputs, output_fn, chunk, progress):
    """The receptive-field path, group by group of sequences; None when it does not apply or disagrees.

    A failure inside the traced graph or the plan means "use full passes"; a failure of the model's
    own forward pass (the check's full passes) propagates.
    """
    n = x.shape[0]
    first, last = int(position.min()), int(position.max()) + 1
    scores = torch.empty(0)
    for g in range(0, n, _GROUP):
        rows_all = torch.nonzero((example >= g) & (example < g + _GROUP)).flatten()
        if not len(rows_all):
            continue
        group_args = [a[g : g + _GROUP] for a in extra]
        try:
            ref = reference_pass(plan, x[g : g + _GROUP], group_args)
            if g == 0 and not plan.build(ref, min(_GROUP, n), first, last):
                return None, "full forward passes (no convolution to localise)"
            plan.set_reference(ref)
            if g == 0:
                picks = rows_all[_check_picks(len(rows_all))]
                check = _scores(
                    plan.run((position[picks] - first).numpy(), example[picks], letter[picks], group_args),
                    output_fn,
                    len(picks),
                )
        except Exception:  # noqa: BLE001 - the traced graph or the plan fails: full passes decide
            return None, "full forward passes (the traced graph failed)"
        if g == 0:
            full = outputs(_mutants(x, example[picks], letter[picks], position[picks]), example[picks])
            tolerance = _CHECK_TOLERANCE.get(full.dtype, 1e-2) * max(float(full.abs().max()), 1e-30)
            if check.shape != full.shape or not float((check - full).abs().max()) <= tolerance:
                return None, "full forward passes (the receptive-field check failed)"
        for s in chunk_starts(len(rows_all), chunk, progress and g == 0, "in-silico mutagenesis"):
            rows = rows_all[s : s + chunk]
            raw = plan.run((position[rows] - first).numpy(), example[rows] - g, letter[rows], group_args)
            out = _scores(raw, output_fn, len(rows))
            if scores.numel() == 0:
                scores = torch.empty(example.shape[0], out.shape[1], dtype=out.dtype)
            scores[rows] = out
    return scores, "receptive field"


def _check_picks(count: int) -> torch.Tensor:
    """Up to 16 of ``count`` edits spread over the span (they are position-major: both ends are in)."""
    return torch.linspace(0, count - 1, min(16, count)).round().long()


def _check_args(args: Any, n: int, x: torch.Tensor) -> list[torch.Tensor]:
    if isinstance(args, torch.Tensor) or not isinstance(args, (tuple, list)):
        raise invalid_parameter("args", _OWNER, "a tuple of tensors (extra model inputs after the sequence)", args)
    checked = []
    for a in args:
        if not isinstance(a, torch.Tensor) or a.dim() == 0 or a.shape[0] != n:
            raise invalid_parameter("args", _OWNER, f"tensors with the batch ({n}) as first dimension", a)
        checked.append(a.detach().to(device=x.device, dtype=x.dtype if a.is_floating_point() else a.dtype))
    return checked


def _check_span(start: Any, end: Any, length: int) -> tuple[int, int]:
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise invalid_parameter(name, _OWNER, "an int", value)
    last = length if end is None else int(end)
    if start is None or not 0 <= int(start) < last <= length:
        raise invalid_parameter(
            "start/end", _OWNER, f"0 <= start < end <= {length} (the sequence length)", (start, end)
        )
    return int(start), last
