"""Loss landscape: 1-D linear interpolation (mode-connectivity barrier) and 2-D filter-normalised planes.

* **1-D**: ``L((1 − α) θ_A + α θ_B)`` for α on a grid, from the initial to the final weights
  (Goodfellow, Vinyals & Saxe, 2015) or between two trained models. The barrier
  ``max_α [L(α) − ((1 − α) L(0) + α L(1))]`` is zero when the two minima are linearly mode
  connected (Frankle et al., 2020).
* **2-D**: ``L(θ + a·d₁ + b·d₂)`` on a grid, with random Gaussian directions rescaled filter by
  filter to the norm of the weights they perturb, ``d_f ← d_f ‖θ_f‖ / ‖d_f‖``, and zero on biases and
  normalisation parameters (Li, Xu, Taylor, Studer & Goldstein, 2018), which makes plots of
  networks with different weight scales comparable.

BatchNorm: running statistics of an interpolated or perturbed network are not the interpolation of
the end points' statistics; with ``bn_mode="recompute"`` they are re-estimated on the evaluation
subset at every grid point (the usual practice for mode connectivity), with ``"keep"`` the
model's statistics are used. Everything runs on a private copy of the model. Cost: grid points
× evaluation samples forward passes (reported as ``n_forward_samples``).

Example:
    >>> line = loss_interpolation(problem)   # init -> final, needs problem.init_state  # doctest: +SKIP
    >>> plane = loss_surface(problem, grid_size=11)                                    # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from deepscope._validation import check_choice, check_float, check_int
from deepscope.errors import DataError, invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["InterpolationResult", "SurfaceResult", "loss_interpolation", "loss_surface", "filter_normalized_direction"]

_BN_MODES = ("auto", "recompute", "keep")
_NORMS = (nn.modules.batchnorm._BatchNorm,)


@dataclasses.dataclass(frozen=True)
class InterpolationResult(Result):
    """Loss (and accuracy) along the segment from ``θ_A`` (α=0) to ``θ_B`` (α=1), and the barrier."""

    alphas: list[float]
    losses: list[float]
    accuracies: list[float] | None
    barrier: float
    distance: float
    endpoints: str
    bn_mode: str
    n_forward_samples: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        accuracies = self.accuracies or [None] * len(self.alphas)
        return [{"alpha": a, "loss": v, "accuracy": c} for a, v, c in zip(self.alphas, self.losses, accuracies)]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(5.0, 3.2) if ax is None else (ax.figure, ax)
        ax.plot(self.alphas, self.losses, "o-", ms=3, label="loss")
        ends = np.interp(
            self.alphas, [0.0, 1.0], [self.losses[self.alphas.index(0.0)], self.losses[self.alphas.index(1.0)]]
        )
        ax.plot(self.alphas, ends, "--", color="grey", lw=0.8, label="linear between end points")
        ax.set_xlabel(f"α ({self.endpoints})")
        ax.set_ylabel("loss")
        ax.set_title(f"1-D interpolation, barrier {self.barrier:.3g}")
        ax.legend(fontsize=8)
        return figure


@dataclasses.dataclass(frozen=True)
class SurfaceResult(Result):
    """Loss on a 2-D grid ``losses[i][j] = L(θ + a_i d₁ + b_j d₂)`` around the model's weights."""

    a: list[float]
    b: list[float]
    losses: list[list[float]]
    normalization: str
    bn_mode: str
    n_forward_samples: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [{"a": a, "b": b, "loss": self.losses[i][j]} for i, a in enumerate(self.a) for j, b in enumerate(self.b)]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.6, 3.8) if ax is None else (ax.figure, ax)
        grid = np.log10(np.maximum(np.asarray(self.losses), 1e-12))
        contour = ax.contourf(self.b, self.a, grid, levels=20, cmap="viridis")
        figure.colorbar(contour, ax=ax, label="log10 loss")
        ax.plot([0], [0], "r*", ms=8)
        ax.set_xlabel("direction 2")
        ax.set_ylabel("direction 1")
        ax.set_title(f"loss surface ({self.normalization}-normalised)")
        return figure


def filter_normalized_direction(
    params: Mapping[str, torch.Tensor], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A Gaussian direction rescaled per filter (first axis) to the weights' norms; zero on 1-D tensors."""
    direction = {}
    for name, value in params.items():
        if value.ndim <= 1:
            direction[name] = torch.zeros_like(value)
            continue
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float64).to(value)
        weight_norms = value.reshape(len(value), -1).norm(dim=1)
        noise_norms = noise.reshape(len(noise), -1).norm(dim=1).clamp(min=1e-30)
        direction[name] = noise * (weight_norms / noise_norms).reshape(-1, *([1] * (value.ndim - 1)))
    return direction


class _Evaluator:
    """Loads parameters into a private copy of the model and evaluates the mean loss on a fixed subset."""

    def __init__(self, problem: Problem, split: str, max_samples: int, bn_mode: str) -> None:
        self.problem = problem
        self.shadow = copy.deepcopy(problem.model).eval()
        self.batches = list(problem.batches(split, max_samples=max_samples))
        self.n_samples = sum(len(y) for _, y in self.batches)
        has_norms = any(isinstance(m, _NORMS) and m.track_running_stats for m in self.shadow.modules())
        self.bn_mode = ("recompute" if has_norms else "keep") if bn_mode == "auto" else bn_mode
        self.n_forward_samples = 0

    @torch.no_grad()
    def __call__(self, params: Mapping[str, torch.Tensor]) -> tuple[float, float | None]:
        named = dict(self.shadow.named_parameters())
        for name, value in params.items():
            named[name].copy_(value)
        if self.bn_mode == "recompute":
            self._recompute_statistics()
        total, correct = 0.0, 0
        for x, y in self.batches:
            output = self.problem.run(x, self.shadow)
            loss = float(self.problem.criterion(output, y))
            if not np.isfinite(loss):
                loss = float("inf")
            total += loss * len(y)
            if self.problem.num_classes is not None:
                correct += int((output.argmax(-1) == y).sum())
            self.n_forward_samples += len(y)
        accuracy = correct / self.n_samples if self.problem.num_classes is not None else None
        return total / self.n_samples, accuracy

    def _recompute_statistics(self) -> None:
        norms = [m for m in self.shadow.modules() if isinstance(m, _NORMS) and m.track_running_stats]
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the subset
            module.train()
        for x, y in self.batches:
            self.problem.run(x, self.shadow)
            self.n_forward_samples += len(y)
        for module in norms:
            module.eval()


def _parameters_of(source: Any, reference: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        source = dict(source.named_parameters())
    if not isinstance(source, Mapping):
        raise invalid_parameter(what, "loss_interpolation", "an nn.Module or a state_dict", source)
    missing = [n for n in reference if n not in source]
    if missing:
        raise invalid_parameter(
            what, "loss_interpolation", f"weights for every parameter (missing {missing[:3]})", list(source)[:3]
        )
    out = {}
    for name, value in reference.items():
        other = source[name].detach().to(value)
        if other.shape != value.shape:
            raise DataError(f"{what}['{name}'] has shape {tuple(other.shape)}, the model's has {tuple(value.shape)}.")
        out[name] = other
    return out


@analysis(takes="problem", family="curvature", example_kwargs={"n_points": 3, "max_samples": 8})
def loss_interpolation(
    problem: Problem,
    other: Any = None,
    *,
    start: Any = None,
    n_points: int = 21,
    margin: float = 0.0,
    max_samples: int = 512,
    split: str = "train",
    bn_mode: str = "auto",
    progress: bool = False,
) -> InterpolationResult:
    """Loss along the straight line between two weight vectors, and the mode-connectivity barrier.

    ``L((1−α)θ_A + αθ_B)``; barrier ``max_α [L(α) − ((1−α)L(0) + αL(1))]`` (Frankle et al., 2020).

    Args:
        problem: a :class:`deepscope.Problem`.
        other: a second model (or state_dict): the line runs from the problem's model (α=0) to it
            (α=1). Default: from ``problem.init_state`` (α=0) to the model's weights (α=1).
        start: explicit weights for α=0 instead (nn.Module or state_dict).
        n_points: grid points in [−margin, 1 + margin] (always includes 0 and 1).
        margin: extend the segment beyond both ends by this fraction.
        max_samples: evaluation subset size (cost = n_points × max_samples forward passes).
        split: "train" or "test".
        bn_mode: "auto" (recompute if the model has BatchNorm), "recompute" or "keep".

    Returns:
        An :class:`InterpolationResult`.

    Example:
        >>> loss_interpolation(problem).barrier  # doctest: +SKIP
    """
    check_int(n_points, "n_points", "loss_interpolation", minimum=2)
    check_int(max_samples, "max_samples", "loss_interpolation", minimum=1)
    check_float(margin, "margin", "loss_interpolation", minimum=0.0)
    check_choice(bn_mode, "bn_mode", "loss_interpolation", _BN_MODES)
    current = problem.parameters(trainable_only=False)
    if other is not None:
        theta_a, theta_b = current, _parameters_of(other, current, "other")
        endpoints = "model → other"
    else:
        source = start if start is not None else problem.init_state
        if source is None:
            raise invalid_parameter(
                "start", "loss_interpolation", "given (or problem.init_state set, or other given)", None
            )
        theta_a, theta_b = _parameters_of(source, current, "start"), current
        endpoints = "start → model" if start is not None else "init → model"
    alphas = sorted(set(np.linspace(-margin, 1 + margin, n_points).round(12).tolist()) | {0.0, 1.0})
    evaluate = _Evaluator(problem, split, max_samples, bn_mode)
    losses, accuracies = [], []
    for alpha in _progress(alphas, progress, "interpolation"):
        loss, accuracy = evaluate({n: (1 - alpha) * theta_a[n] + alpha * theta_b[n] for n in current})
        losses.append(loss)
        accuracies.append(accuracy)
    l0, l1 = losses[alphas.index(0.0)], losses[alphas.index(1.0)]
    inside = [(a, v) for a, v in zip(alphas, losses) if 0.0 <= a <= 1.0]
    barrier = max(v - ((1 - a) * l0 + a * l1) for a, v in inside)
    distance = float(torch.sqrt(sum(((theta_b[n] - theta_a[n]).double() ** 2).sum() for n in current)))
    return InterpolationResult(
        alphas=alphas,
        losses=losses,
        accuracies=accuracies if accuracies[0] is not None else None,
        barrier=float(barrier),
        distance=distance,
        endpoints=endpoints,
        bn_mode=evaluate.bn_mode,
        n_forward_samples=evaluate.n_forward_samples,
        note=_note(problem),
    )


@analysis(takes="problem", family="curvature", example_kwargs={"grid_size": 3, "max_samples": 8})
def loss_surface(
    problem: Problem,
    *,
    grid_size: int = 21,
    span: float = 1.0,
    max_samples: int = 256,
    seed: int = 0,
    normalization: str = "filter",
    split: str = "train",
    bn_mode: str = "keep",
    progress: bool = False,
) -> SurfaceResult:
    """Loss on a random 2-D plane through the model's weights, with filter-normalised directions.

    ``L(θ + a d₁ + b d₂)`` for ``a, b ∈ [−span, span]`` (Li et al., 2018).

    Args:
        problem: a :class:`deepscope.Problem`.
        grid_size: points per axis (cost = grid_size² × max_samples forward passes).
        span: half-width of the grid in units of the (normalised) directions.
        max_samples: evaluation subset size.
        seed: seed of the two random directions.
        normalization: "filter" (Li et al.) or "none" (raw Gaussian directions).
        bn_mode: "keep" (the model's running statistics, as Li et al.), "recompute" or "auto".

    Returns:
        A :class:`SurfaceResult`; ``plot()`` draws log-loss contours.

    Example:
        >>> loss_surface(problem, grid_size=11).plot()  # doctest: +SKIP
    """
    check_int(grid_size, "grid_size", "loss_surface", minimum=2)
    check_int(max_samples, "max_samples", "loss_surface", minimum=1)
    check_float(span, "span", "loss_surface", minimum=0.0, strict_minimum=True)
    check_choice(normalization, "normalization", "loss_surface", ("filter", "none"))
    check_choice(bn_mode, "bn_mode", "loss_surface", _BN_MODES)
    current = problem.parameters(trainable_only=True)
    generator = torch.Generator().manual_seed(seed)
    if normalization == "filter":
        first, second = (filter_normalized_direction(current, generator) for _ in range(2))
    else:
        first, second = (
            {n: torch.randn(v.shape, generator=generator, dtype=torch.float64).to(v) for n, v in current.items()}
            for _ in range(2)
        )
    coordinates = np.linspace(-span, span, grid_size).tolist()
    evaluate = _Evaluator(problem, split, max_samples, bn_mode)
    losses = [[0.0] * grid_size for _ in range(grid_size)]
    cells = [(i, j) for i in range(grid_size) for j in range(grid_size)]
    for i, j in _progress(cells, progress, "loss surface"):
        a, b = coordinates[i], coordinates[j]
        losses[i][j] = evaluate({n: current[n] + a * first[n] + b * second[n] for n in current})[0]
    return SurfaceResult(
        a=coordinates,
        b=coordinates,
        losses=losses,
        normalization=normalization,
        bn_mode=evaluate.bn_mode,
        n_forward_samples=evaluate.n_forward_samples,
        note=_note(problem),
    )


def _progress(items: list, progress: bool, description: str):
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, leave=False)


def _note(problem: Problem) -> str:
    from deepscope.guard import current_guard_report

    report = current_guard_report(problem.model)
    return report.note if report is not None else ""
