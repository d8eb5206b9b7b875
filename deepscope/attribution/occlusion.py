"""Occlusion: how much the target score drops when a sliding window is replaced by a baseline."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from deepscope._inputs import batch_length, is_mapping, rows
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    chunk_starts,
    evaluate_outputs,
    finish,
    prepare,
    prepare_baseline,
)
from deepscope.attribution._layer import check_token_ids, find_layer, input_baseline
from deepscope.attribution._prepare import is_token_inputs
from deepscope.attribution._registry import ReportDefaults, attribution_method, is_image_like
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.registry import analysis

__all__ = ["occlusion", "occlusion_windows"]


def _as_shape(value: Any, name: str, dims: int) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * dims
    if (
        not isinstance(value, (tuple, list))
        or len(value) != dims
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise invalid_parameter(name, "occlusion", f"an int >= 1 or a tuple of {dims} ints >= 1", value)
    return tuple(value)


def occlusion_windows(feature_shape: tuple[int, ...], window: Any, strides: Any = None) -> torch.Tensor:
    """Boolean masks ``(windows, *feature_shape)`` of every window position (Captum's layout: windows
    start at multiples of the stride, the last one in each dimension is cut at the border).

    Example:
        >>> occlusion_windows((4,), 2).int().tolist()
        [[1, 1, 0, 0], [0, 0, 1, 1]]
    """
    dims = len(feature_shape)
    window = _as_shape(window, "window", dims)
    strides = window if strides is None else _as_shape(strides, "strides", dims)
    if any(w > size for w, size in zip(window, feature_shape)):
        raise invalid_parameter("window", "occlusion", f"no larger than the feature shape {feature_shape}", window)
    starts = [
        [k * s for k in range(math.ceil((size - w) / s) + 1)] for size, w, s in zip(feature_shape, window, strides)
    ]
    masks = []
    for corner in itertools.product(*starts):
        mask = torch.zeros(feature_shape, dtype=torch.bool)
        mask[tuple(slice(c, c + w) for c, w in zip(corner, window))] = True
        masks.append(mask)
    return torch.stack(masks)


def _report_options(inputs: torch.Tensor, max_steps: int) -> dict[str, Any]:
    """The report's window: all channels and a quarter of each spatial extent."""
    return {"window": (inputs.shape[1],) + tuple(max(1, s // 4) for s in inputs.shape[2:])}


@attribution_method(
    aliases=("occ",),
    claimed_axioms={"sensitivity", "dummy", "symmetry", "implementation_invariance", "linearity"},
    report=ReportDefaults(
        order=5, shown_when=is_image_like, options=_report_options, axiom_budget="full", axiom_order=3
    ),
    takes=("tensor", "tokens"),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"window": (1, 4, 4)})
def occlusion(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    window: Any = 1,
    strides: Any = None,
    baseline: Any = None,
    keep_tokens: Sequence[int] = (),
    input_key: str = "input_ids",
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    progress: bool = False,
) -> Attribution:
    """Occlusion (Zeiler & Fergus, 2014): φ_i = mean over windows W ∋ i of F(x) − F(x with W set to x').

    Token inputs (integer ids, or a dict whose ``input_key`` tensor holds them) are occluded in id
    space: the window's tokens are replaced by the baseline's (a pad or [MASK] id), the other named
    tensors (the attention mask) held fixed; ``values`` are then ``(batch, tokens)``.

    Args:
        model, inputs, target, output_fn, max_batch: as for every method.
        window: the sliding window shape over the feature dimensions (an int for every dimension,
            or a tuple, e.g. ``(1, 3, 3)`` for images with a channel dimension).
        strides: the step between windows (default: the window, i.e. no overlap).
        baseline: the replacement value (None = zeros), a number or a tensor shaped like the inputs;
            for token ids: None (id 0), a token id, or an integer tensor of ids.
        keep_tokens: for token ids, ids never occluded (e.g. [CLS], [SEP]).
        input_key: for dict inputs, the name of the tensor that is occluded.
        progress: show a tqdm bar over the chunks.

    Returns:
        An :class:`Attribution`; ``diagnostics["windows"]`` is the number of window positions.

    Example:
        >>> net = torch.nn.Linear(4, 1, bias=False)
        >>> a = occlusion(net, torch.ones(1, 4), target=0)
        >>> bool(torch.allclose(a.values, net.weight))
        True
    """
    owner = "occlusion"
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets
    named = is_mapping(x)
    if is_token_inputs(x):
        reference_inputs = input_baseline(x, baseline, owner, input_key=input_key, keep_tokens=keep_tokens)
        try:
            embedding = find_layer(model, None, owner)
        except UnsupportedModelError:  # no single input embedding: the forward pass will say what is wrong
            embedding = None
        if embedding is not None:
            check_token_ids(embedding[1], embedding[0], reference_inputs, owner, input_key=input_key, what="baseline")
        features = x[input_key] if named else x
        reference = reference_inputs[input_key] if named else reference_inputs
    else:
        features, reference = x, prepare_baseline(baseline, x, owner)
    masks = occlusion_windows(tuple(features.shape[1:]), window, strides).to(features.device)
    n, windows = batch_length(x), masks.shape[0]
    full = evaluate_outputs(prepared.forward, x, prepared.max_batch).gather(1, targets.t()).t()
    scores = torch.empty(targets.shape[0], n, windows, dtype=full.dtype, device=full.device)
    for start in chunk_starts(n * windows, prepared.max_batch, progress, "occlusion"):
        flat = torch.arange(start, min(start + prepared.max_batch, n * windows), device=features.device)
        example, position = flat // windows, flat % windows
        occluded = torch.where(masks[position], reference[example], features[example])
        if named:
            occluded = {**rows(x, example), input_key: occluded}
        outputs = evaluate_outputs(prepared.forward, occluded, prepared.max_batch)
        scores[:, example, position] = full[:, example] - outputs.gather(1, targets[:, example].t()).t()
    flat_masks = masks.flatten(1).to(scores.dtype)
    counts = flat_masks.sum(0)
    values = (scores @ flat_masks) / counts
    return finish(
        model,
        values=values.reshape(targets.shape[0], *features.shape),
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics={"windows": torch.full(targets.shape, windows)},
        evaluations=prepared.evaluations + n * (windows + 1),
        options={"max_batch": prepared.max_batch},
    )
