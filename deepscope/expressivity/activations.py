"""A catalogue of activation functions: Lipschitz constant, smoothness, monotonicity, saturation, mean field."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepscope.errors import invalid_parameter
from deepscope.expressivity import _meanfield
from deepscope.results import Result

__all__ = ["ACTIVATIONS", "ANALYTIC_LIPSCHITZ", "ActivationProfile", "ActivationCatalogue", "activation_catalogue"]
__all__ += ["resolve_activation"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
}

_SQRT2 = math.sqrt(2.0)
ANALYTIC_LIPSCHITZ = {
    "relu": 1.0,
    "leaky_relu": 1.0,
    "elu": 1.0,  # alpha = 1: slope 1 for x > 0, alpha e^x < 1 for x < 0
    # GELU' = Phi(x) + x phi(x), largest at x = sqrt(2): Phi(sqrt 2) + sqrt(2) phi(sqrt 2)
    "gelu": 0.5 * (1 + math.erf(1.0)) + _SQRT2 * math.exp(-1.0) / math.sqrt(2 * math.pi),
    "silu": 1.0998,  # sigma(x)(1 + x(1 - sigma(x))), largest at x ~ 2.3994 (4 digits)
    "tanh": 1.0,
    "sigmoid": 0.25,
    "softplus": 1.0,  # supremum of the logistic sigmoid, approached as x -> infinity
}


def resolve_activation(activation: str | Callable, owner: str = "activation") -> tuple[str, Callable]:
    """A ``(name, callable)`` pair for a catalogue name or any callable on tensors."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise invalid_parameter("activation", owner, f"one of {sorted(ACTIVATIONS)} or a callable", activation)
        return activation, ACTIVATIONS[activation]
    if callable(activation):
        return getattr(activation, "__name__", type(activation).__name__), activation
    raise invalid_parameter("activation", owner, "a name or a callable", activation)


@dataclasses.dataclass(frozen=True)
class ActivationProfile:
    """The properties of one activation, measured on a grid of ``[-grid_limit, grid_limit]``."""

    name: str
    lipschitz: float
    analytic_lipschitz: float | None
    smooth: bool
    monotonic: bool
    saturates_left: bool
    saturates_right: bool
    value_at_zero: float
    gaussian_mean: float
    zero_centred: bool
    critical_sigma_w: float | None
    chi_1_at_he: float


@dataclasses.dataclass(frozen=True)
class ActivationCatalogue(Result):
    """Profiles of several activations; ``rows()`` is one row per activation, ``plot()`` draws phi and phi'."""

    profiles: list[ActivationProfile]
    grid_limit: float

    def rows(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(profile) for profile in self.profiles]

    def plot(self, ax=None):
        from deepscope.report.svg import new_figure

        figure, axes = new_figure(8.0, 3.4, ncols=2)
        x = torch.linspace(-4, 4, 400, dtype=torch.float64)
        for profile in self.profiles:
            _, function = resolve_activation(_CALLABLES.get(profile.name, profile.name))
            axes[0].plot(x, function(x), label=profile.name, linewidth=1.2)
            axes[1].plot(x, _meanfield.derivative(function, x), linewidth=1.2)
        axes[0].set_title("activation phi(x)")
        axes[1].set_title("derivative phi'(x)")
        axes[0].legend(fontsize=7, ncol=2)
        for ax in axes:
            ax.axhline(0, color="grey", linewidth=0.4)
            ax.set_xlabel("x")
        return figure


_CALLABLES: dict[str, Callable] = {}


def activation_catalogue(
    activations: Sequence[str | Callable] | None = None, *, grid_limit: float = 10.0, points: int = 20001
) -> ActivationCatalogue:
    """Profile each activation: Lipschitz constant, smoothness, monotonicity, saturation, mean field.

    * Lipschitz: ``max |phi'|`` on a fine grid (autograd), next to the analytic value where known.
    * Smooth: ``phi'`` has no jump on the grid (largest step in ``phi'`` below 1e-2 of its range).
    * Saturation: ``|phi'| < 1e-3`` at the grid's end, per side.
    * Zero-centred: ``phi(0) = 0`` and ``|E phi(Z)| < 0.05`` for ``Z ~ N(0, 1)``.
    * Mean field (Poole et al. 2016; Schoenholz et al. 2017): the edge-of-chaos weight scale
      ``sigma_w`` at ``sigma_b = 0`` (``chi_1 = 1``; ReLU: sqrt 2, tanh: 1), and ``chi_1`` at He
      initialisation ``sigma_w^2 = 2`` at unit pre-activation variance ``q = 1``.

    Args:
        activations: names from :data:`ACTIVATIONS` or callables (default: the whole catalogue).
        grid_limit: the grid is ``[-grid_limit, grid_limit]``.
        points: grid size.

    Example:
        >>> activation_catalogue(["relu", "tanh"]).rows()[0]["lipschitz"]
        1.0
    """
    names = list(ACTIVATIONS) if activations is None else list(activations)
    profiles = []
    x = torch.linspace(-grid_limit, grid_limit, points, dtype=torch.float64)
    z, w = _meanfield.gaussian_nodes()
    for activation in names:
        name, function = resolve_activation(activation, "activation_catalogue")
        if not isinstance(activation, str):
            _CALLABLES[name] = function
        slope = _meanfield.derivative(function, x)
        jump = float((slope[1:] - slope[:-1]).abs().max())
        spread = float(slope.max() - slope.min()) or 1.0
        value_at_zero = float(function(torch.zeros(1, dtype=torch.float64)))
        gaussian_mean = float((w * function(z)).sum())
        profiles.append(
            ActivationProfile(
                name=name,
                lipschitz=float(slope.abs().max()),
                analytic_lipschitz=ANALYTIC_LIPSCHITZ.get(name) if isinstance(activation, str) else None,
                smooth=jump < 1e-2 * spread,
                monotonic=bool((slope >= -1e-12).all()),
                saturates_left=bool(slope[0].abs() < 1e-3),
                saturates_right=bool(slope[-1].abs() < 1e-3),
                value_at_zero=value_at_zero,
                gaussian_mean=gaussian_mean,
                zero_centred=abs(value_at_zero) < 1e-12 and abs(gaussian_mean) < 0.05,
                critical_sigma_w=critical_sigma_w(function, 0.0),
                chi_1_at_he=_meanfield.chi_1(function, 1.0, _SQRT2),
            )
        )
    return ActivationCatalogue(profiles=profiles, grid_limit=grid_limit)


def critical_sigma_w(function: Callable, sigma_b: float, low: float = 0.05, high: float = 10.0) -> float | None:
    """The ``sigma_w`` where ``chi_1(q*) = 1`` at this ``sigma_b`` (bisection; None if not bracketed)."""

    def excess(sigma_w: float) -> float:
        q_star = _meanfield.fixed_point(function, sigma_w, sigma_b)
        return _meanfield.chi_1(function, max(q_star, 1e-12) if math.isfinite(q_star) else 1.0, sigma_w) - 1.0

    # chi_1 need not be monotone in sigma_w (saturating phi): take the first sign change on a log grid
    grid = np.geomspace(low, high, 33)
    values = [excess(float(s)) for s in grid]
    change = next((i for i in range(len(grid) - 1) if values[i] * values[i + 1] <= 0), None)
    if change is None:
        return None
    low, high, f_low = float(grid[change]), float(grid[change + 1]), values[change]
    for _ in range(50):
        middle = 0.5 * (low + high)
        f_middle = excess(middle)
        if f_middle == 0:
            return middle
        if f_low * f_middle < 0:
            high = middle
        else:
            low, f_low = middle, f_middle
        if high - low < 1e-6:
            break
    return 0.5 * (low + high)
