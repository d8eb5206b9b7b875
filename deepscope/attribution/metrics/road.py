"""ROAD: RemOve And Debias with noisy linear imputation (Rong et al. 2022).

Removing features by setting them to a constant leaks the removal pattern to the model (a
"class information leakage" through the mask shape). ROAD instead replaces each removed position
by the weighted average of its neighbours, solving the linear system

    (Σ_j w_ij) x_i − Σ_j w_ij x_j = 0   for every removed position i (known x_j on the right),

with w = 1/6 for the 4 direct and 1/12 for the 4 diagonal neighbours of an image pixel (1/2 for
the two neighbours in a sequence), then adds N(0, σ²) noise to the imputed values. The target
score is measured after removing a fraction of positions in Most-Relevant-First (MoRF: a faithful
map makes it fall fast) and Least-Relevant-First (LeRF: it should stay high) order. The ROAD
score is the mean over fractions of LeRF − MoRF (higher = more faithful). Positions are ranked by
the attribution summed over channels; all channels of a removed position are imputed.
The dense systems are solved batched in float64, chunked to a memory budget.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from deepscope._validation import check_float
from deepscope.attribution._base import guard_note
from deepscope.attribution.metrics._common import (
    DEFAULT_MAX_BATCH,
    AttributionSource,
    check_output,
    mean_and_standard_error,
    prepare_single_target,
    resolve_attributions,
    selected_scores,
)
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["ROAD", "road", "noisy_linear_imputation"]

_SOLVE_BUDGET_BYTES = 64 * 2**20


def _neighbour_weights(spatial: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Dense (N, N) neighbour weights of a 1-D or 2-D grid (Rong et al. 2022)."""
    if len(spatial) == 1:
        offsets = [((1,), 0.5), ((-1,), 0.5)]
        grid = torch.arange(spatial[0], device=device).reshape(-1, 1)
    else:
        direct, diagonal = 1 / 6, 1 / 12
        offsets = [((0, 1), direct), ((0, -1), direct), ((1, 0), direct), ((-1, 0), direct)]
        offsets += [((1, 1), diagonal), ((1, -1), diagonal), ((-1, 1), diagonal), ((-1, -1), diagonal)]
        rows, cols = torch.meshgrid(
            torch.arange(spatial[0], device=device), torch.arange(spatial[1], device=device), indexing="ij"
        )
        grid = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)
    size = grid.shape[0]
    shape = torch.tensor(spatial, device=device)
    strides = torch.tensor([math.prod(spatial[i + 1 :]) for i in range(len(spatial))], device=device)
    weights = torch.zeros(size, size, dtype=torch.float64, device=device)
    for offset, weight in offsets:
        neighbour = grid + torch.tensor(offset, device=device)
        inside = ((neighbour >= 0) & (neighbour < shape)).all(dim=1)
        source = torch.arange(size, device=device)[inside]
        weights[source, (neighbour[inside] * strides).sum(dim=1)] = weight
    return weights


def noisy_linear_imputation(
    inputs: torch.Tensor, removed: torch.Tensor, *, noise_std: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace the ``removed`` positions of ``inputs`` by noisy linear imputation (Rong et al. 2022).

    Args:
        inputs: ``(batch, channels, *spatial)`` with one or two spatial dimensions.
        removed: boolean ``(batch, *spatial)``; True = impute this position (every channel).
        noise_std: σ of the Gaussian noise added to imputed values. generator: for the noise.

    Returns:
        A new tensor shaped like ``inputs``; kept positions are unchanged.

    Example:
        >>> x = torch.tensor([[[0.0, 9.0, 9.0, 9.0, 4.0]]])
        >>> noisy_linear_imputation(x, torch.tensor([[False, True, True, True, False]]))
        tensor([[[0., 1., 2., 3., 4.]]])
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() not in (3, 4):
        raise invalid_parameter(
            "inputs", "noisy_linear_imputation", "a tensor (batch, channels, L) or (batch, channels, H, W)", inputs
        )
    spatial = tuple(inputs.shape[2:])
    if not isinstance(removed, torch.Tensor) or tuple(removed.shape) != (inputs.shape[0], *spatial):
        raise invalid_parameter(
            "removed", "noisy_linear_imputation", f"a boolean tensor of shape {(inputs.shape[0], *spatial)}", removed
        )
    batch, channels = inputs.shape[:2]
    size = math.prod(spatial)
    weights = _neighbour_weights(spatial, inputs.device)
    laplacian = torch.diag(weights.sum(dim=1)) - weights
    identity = torch.eye(size, dtype=torch.float64, device=inputs.device)
    values = inputs.reshape(batch, channels, size).transpose(1, 2).to(torch.float64)  # (batch, N, C)
    unknown = removed.reshape(batch, size).to(inputs.device)
    solved = torch.empty_like(values)
    chunk = max(1, _SOLVE_BUDGET_BYTES // (size * size * 8))
    for start in range(0, batch, chunk):
        part = unknown[start : start + chunk]
        system = torch.where(part.unsqueeze(2), laplacian, identity)
        right = torch.where(
            part.unsqueeze(2), torch.zeros_like(values[start : start + chunk]), values[start : start + chunk]
        )
        solved[start : start + chunk] = torch.linalg.solve(system, right)
    if noise_std > 0:
        noise = torch.randn(solved.shape, generator=generator, dtype=torch.float64).to(solved.device) * noise_std
        solved = solved + noise * unknown.unsqueeze(2)
    return solved.transpose(1, 2).reshape(inputs.shape).to(inputs.dtype)


@dataclasses.dataclass(frozen=True)
class ROAD(Result):
    """MoRF and LeRF curves under noisy linear imputation, per example.

    Attributes:
        fractions: ``(levels,)`` fraction of positions removed.
        morf, lerf: ``(batch, levels)`` target score after removing the most / least relevant first.
        road_score, standard_error: mean over examples of mean_levels(LeRF − MoRF); higher is better.
        mean_morf, mean_lerf: ``(levels,)`` the curves averaged over examples.
    """

    fractions: torch.Tensor
    morf: torch.Tensor
    lerf: torch.Tensor
    mean_morf: torch.Tensor
    mean_lerf: torch.Tensor
    road_score: float
    standard_error: float
    noise_std: float
    output: str
    model_evaluations: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"fraction": float(f), "morf": float(m), "lerf": float(lr)}
            for f, m, lr in zip(self.fractions, self.mean_morf, self.mean_lerf)
        ]

    def plot(self, ax=None):  # -> matplotlib.figure.Figure
        """Mean MoRF and LeRF curves."""
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.5, 3.0) if ax is None else (ax.figure, ax)
        ax.plot(self.fractions.numpy(), self.mean_morf.numpy(), marker="o", label="MoRF (lower is better)")
        ax.plot(self.fractions.numpy(), self.mean_lerf.numpy(), marker="s", label="LeRF (higher is better)")
        ax.set_xlabel("fraction of positions imputed")
        ax.set_ylabel(f"target {self.output}")
        ax.set_title(f"ROAD score {self.road_score:.3f}")
        ax.legend()
        return figure


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"fractions": (0.25, 0.5)})
def road(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    attributions: AttributionSource = None,
    fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    noise_std: float = 0.01,
    output: str = "probability",
    seed: int = 0,
    progress: bool = False,
    output_fn: Any = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> ROAD:
    """ROAD (Rong et al. 2022): MoRF/LeRF curves with noisy linear imputation instead of retraining.

    Args:
        model: classifier. inputs: ``(batch, channels, L)`` sequences or ``(batch, channels, H, W)`` images.
        target: None (predicted class), an int or ``(batch,)`` ints.
        attributions: tensor shaped like inputs, an Attribution, a method name or callable (None = saliency).
        fractions: removal levels, each in (0, 1). noise_std: σ of the imputation noise (0.01 as in the paper).
        output: "probability" or "logit". seed: noise seed. progress: show a tqdm bar over the levels.
        output_fn, max_batch: as for the methods.

    Returns:
        :class:`ROAD`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> road(net, torch.rand(2, 1, 4, 4), 0, fractions=(0.5,)).morf.shape
        torch.Size([2, 1])
    """
    owner = "road"
    output = check_output(output, owner)
    noise_std = check_float(noise_std, "noise_std", owner, minimum=0.0)
    if isinstance(fractions, (int, float)) or not fractions:
        raise invalid_parameter("fractions", owner, "a non-empty sequence of floats in (0, 1)", fractions)
    levels = [check_float(f, "fractions", owner, minimum=0.0, maximum=1.0, strict_minimum=True) for f in fractions]
    if any(f >= 1.0 for f in levels):
        raise invalid_parameter("fractions", owner, "a non-empty sequence of floats in (0, 1)", fractions)
    prepared = prepare_single_target(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets[0]
    if x.dim() not in (3, 4):
        raise invalid_parameter(
            "inputs", owner, "sequences (batch, channels, L) or images (batch, channels, H, W)", inputs
        )
    batch = x.shape[0]
    values = resolve_attributions(
        model, x, targets, attributions, owner, output_fn=output_fn, max_batch=prepared.max_batch
    )
    relevance = values.sum(dim=1).reshape(batch, -1)
    size = relevance.shape[1]
    order = torch.argsort(relevance, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(size, device=x.device).expand_as(order).contiguous())
    generator = torch.Generator().manual_seed(seed)
    curves = torch.empty(2, len(levels), batch, dtype=torch.float64)
    for j, fraction in enumerate(tqdm(levels, desc="ROAD levels", disable=not progress)):
        count = round(fraction * size)
        for k, removed in enumerate((ranks < count, ranks >= size - count)):  # MoRF, LeRF
            imputed = noisy_linear_imputation(
                x, removed.reshape(batch, *x.shape[2:]), noise_std=noise_std, generator=generator
            )
            curves[k, j] = (
                selected_scores(prepared.forward, imputed, targets, output, prepared.max_batch).double().cpu()
            )
    morf, lerf = curves[0].t().contiguous(), curves[1].t().contiguous()
    score, error, _ = mean_and_standard_error((lerf - morf).mean(dim=1))
    return ROAD(
        fractions=torch.tensor(levels, dtype=torch.float64),
        morf=morf,
        lerf=lerf,
        mean_morf=morf.mean(dim=0),
        mean_lerf=lerf.mean(dim=0),
        road_score=score,
        standard_error=error,
        noise_std=noise_std,
        output=output,
        model_evaluations=prepared.evaluations + 2 * len(levels) * batch,
        note=guard_note(model),
    )
