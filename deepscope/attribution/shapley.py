"""Shapley values of features or feature groups: exact enumeration, or permutation sampling with a standard error."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_int
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    chunk_starts,
    evaluate_outputs,
    finish,
    prepare,
    prepare_baseline,
    relative_completeness_error,
)
from deepscope.attribution._registry import PATH_AXIOMS, ReportDefaults, attribution_method, has_few_features
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis

__all__ = ["shapley"]


def _groups(feature_groups: Any, feature_shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, int]:
    """Group index per feature (flattened) relabelled 0..M-1, and M."""
    count = math.prod(feature_shape)
    if feature_groups is None:
        return torch.arange(count, device=device), count
    if not isinstance(feature_groups, torch.Tensor) or feature_groups.is_floating_point():
        raise invalid_parameter(
            "feature_groups", "shapley", f"an integer tensor of shape {feature_shape}", feature_groups
        )
    if tuple(feature_groups.shape) != feature_shape:
        raise invalid_parameter(
            "feature_groups", "shapley", f"an integer tensor of shape {feature_shape}", feature_groups
        )
    _, labels = torch.unique(feature_groups.reshape(-1), return_inverse=True)
    return labels.to(device), int(labels.max()) + 1


def _values_of_coalitions(forward, x, reference, labels, coalitions, targets, max_batch, progress=False):
    """v(S) = F(x on S, x' elsewhere) for every example and coalition: coalitions (K, M) bool -> (T, n, K)."""
    n, k = x.shape[0], coalitions.shape[0]
    feature_masks = coalitions[:, labels]  # (K, features)
    flat_x, flat_reference = x.flatten(1), reference.flatten(1)
    values = torch.empty(targets.shape[0], n, k, dtype=x.dtype, device=x.device)
    for start in chunk_starts(n * k, max_batch, progress, "shapley"):
        flat = torch.arange(start, min(start + max_batch, n * k), device=x.device)
        example, coalition = flat // k, flat % k
        points = torch.where(feature_masks[coalition], flat_x[example], flat_reference[example])
        outputs = evaluate_outputs(forward, points.view(-1, *x.shape[1:]), max_batch)
        values[:, example, coalition] = outputs.gather(1, targets[:, example].t()).t()
    return values


def _exact(forward, x, reference, labels, groups, targets, max_batch, progress):
    """φ_j = Σ_{S ∌ j} |S|!(M−|S|−1)!/M! (v(S ∪ {j}) − v(S)) over all 2^M coalitions."""
    codes = torch.arange(2**groups, device=x.device)
    bits = ((codes.unsqueeze(1) >> torch.arange(groups, device=x.device)) & 1).bool()  # (2^M, M)
    values = _values_of_coalitions(forward, x, reference, labels, bits, targets, max_batch, progress)
    sizes = bits.sum(1)
    weights = torch.tensor(
        [math.factorial(s) * math.factorial(groups - s - 1) / math.factorial(groups) for s in range(groups)],
        dtype=x.dtype,
        device=x.device,
    )
    phi = torch.empty(targets.shape[0], x.shape[0], groups, dtype=x.dtype, device=x.device)
    for j in range(groups):
        without = codes[~bits[:, j]]
        gain = values[:, :, without | (1 << j)] - values[:, :, without]
        phi[:, :, j] = gain @ weights[sizes[without]]
    return phi, torch.zeros_like(phi), (values[:, :, -1], values[:, :, 0]), 2**groups


def _sampled(forward, x, reference, labels, groups, targets, max_batch, samples, seed, progress):
    """Permutation sampling (Castro et al., 2009): mean marginal contribution over random orders."""
    generator = torch.Generator().manual_seed(seed)
    orders = torch.stack([torch.randperm(groups, generator=generator) for _ in range(samples)]).to(x.device)
    # coalition after adding the first p features of each order: (samples, M + 1, M)
    rank = torch.empty_like(orders)
    rank.scatter_(1, orders, torch.arange(groups, device=x.device).expand(samples, groups))
    steps = torch.arange(groups + 1, device=x.device)
    coalitions = rank.unsqueeze(1) < steps.view(1, -1, 1)
    values = _values_of_coalitions(
        forward, x, reference, labels, coalitions.reshape(-1, groups), targets, max_batch, progress
    ).view(targets.shape[0], x.shape[0], samples, groups + 1)
    gains = values[..., 1:] - values[..., :-1]  # gain of the feature added at position p
    contributions = torch.zeros_like(gains)
    contributions.scatter_(3, orders.expand_as(gains), gains)
    phi = contributions.mean(2)
    standard_error = contributions.std(2) / samples**0.5
    # v(N) = F(x) and v(∅) = F(x'), the same for every order
    return phi, standard_error, (values[:, :, 0, -1], values[:, :, 0, 0]), samples * (groups + 1)


@attribution_method(
    aliases=("shap",), claimed_axioms=PATH_AXIOMS, report=ReportDefaults(order=7, shown_when=has_few_features)
)
@analysis(takes="model_inputs", family="attribution", fixture="mlp", example_kwargs={"samples": 3})
def shapley(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    baseline: Any = None,
    feature_groups: torch.Tensor | None = None,
    max_exact: int = 15,
    samples: int = 64,
    seed: int = 0,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    progress: bool = False,
) -> Attribution:
    """Baseline Shapley values, φ_j = Σ_{S ⊆ N∖{j}} |S|!(M−|S|−1)!/M! [v(S ∪ {j}) − v(S)] (Shapley, 1953),
    with v(S) = F(x on S, x' elsewhere) (Sundararajan & Najmi, 2020).

    Exact enumeration of all 2^M coalitions when M ≤ ``max_exact``; otherwise permutation sampling
    (Castro et al., 2009) with ``samples`` random orders and a standard error per feature.
    Efficiency, Σφ = F(x) − F(x'), holds exactly in both modes (each order telescopes).

    Args:
        model, inputs, target, output_fn, max_batch: as for every method.
        baseline: the reference x' for absent features (None = zeros).
        feature_groups: integer tensor shaped like one example; features with the same id
            form one player (every feature of a group receives the group's value).
        max_exact: the largest M solved exactly; samples, seed: the permutation sampler.
        progress: show a tqdm bar over the chunks.

    Returns:
        An :class:`Attribution`; diagnostics ``players`` (M), ``exact`` (bool),
        ``max_standard_error`` per example (0 when exact), ``completeness_error``, and
        ``standard_error`` (per player, shaped (…, M)).

    Example:
        >>> net = torch.nn.Linear(3, 1, bias=False)
        >>> a = shapley(net, torch.ones(1, 3), target=0)
        >>> bool(torch.allclose(a.values, net.weight))
        True
    """
    owner = "shapley"
    check_int(max_exact, "max_exact", owner, minimum=1, maximum=24)
    check_int(samples, "samples", owner, minimum=2)
    check_int(seed, "seed", owner, minimum=0)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets
    reference = prepare_baseline(baseline, x, owner)
    labels, groups = _groups(feature_groups, tuple(x.shape[1:]), x.device)
    exact = groups <= max_exact
    if exact:
        phi, standard_error, (at_input, at_baseline), per_example = _exact(
            prepared.forward, x, reference, labels, groups, targets, prepared.max_batch, progress
        )
    else:
        phi, standard_error, (at_input, at_baseline), per_example = _sampled(
            prepared.forward, x, reference, labels, groups, targets, prepared.max_batch, samples, seed, progress
        )
    values = phi[:, :, labels].reshape(targets.shape[0], *x.shape)
    error = relative_completeness_error(phi.sum(2), at_input, at_baseline)
    diagnostics = {
        "players": torch.full(targets.shape, groups),
        "exact": torch.full(targets.shape, exact),
        "max_standard_error": standard_error.max(2).values,
        "completeness_error": error,
        "standard_error": standard_error,
    }
    return finish(
        model,
        values=values,
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics=diagnostics,
        evaluations=prepared.evaluations + x.shape[0] * per_example,
        options={"max_exact": max_exact, "samples": samples, "seed": seed, "max_batch": prepared.max_batch},
    )
