"""A catalogue of activation functions: Lipschitz constant, smoothness, monotonicity, saturation, mean field."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.errors import invalid_parameter
from deepscope.expressivity import _meanfield
from deepscope.results import Result

__all__ = ["ACTIVATIONS", "ANALYTIC_LIPSCHITZ", "ActivationProfile", "ActivationCatalogue", "activation_catalogue"]
__all__ += ["resolve_activation", "activation_lipschitz", "function_lipschitz"]

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
# GELU' = Phi(x) + x phi(x), largest at x = sqrt(2): Phi(sqrt 2) + sqrt(2) phi(sqrt 2)
_GELU_EXACT = 0.5 * (1 + math.erf(1.0)) + _SQRT2 * math.exp(-1.0) / math.sqrt(2 * math.pi)
_SELU_SLOPE = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717  # scale * alpha, at 0-


@functools.cache
def _peak_slope(kind: str) -> float:
    """``max |phi'|`` of a smooth activation whose slope peaks once in [-10, 10] and tends to 1 and 0.

    GELU (tanh approximation), SiLU and Mish have no closed form for the peak: a grid of step 1e-3
    finds it, a golden-section search refines it (|phi'| is unimodal there), and the value is raised
    by 1e-9 relative so that it stays an upper bound despite rounding.
    """
    module = {"gelu_tanh": nn.GELU(approximate="tanh"), "silu": nn.SiLU(), "mish": nn.Mish()}[kind]

    def slope(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(module(x).sum(), x)
        return grad.abs()

    grid = torch.linspace(-10.0, 10.0, 20001, dtype=torch.float64)
    best = float(grid[int(slope(grid).argmax())])
    low, high, ratio = best - 2e-3, best + 2e-3, (math.sqrt(5.0) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        values = slope(torch.tensor([a, b], dtype=torch.float64))
        low, high = (a, high) if values[1] > values[0] else (low, b)
    peak = float(slope(torch.tensor([low, (low + high) / 2, high], dtype=torch.float64)).max())
    return max(peak, 1.0) * (1 + 1e-9)


def _celu(module: nn.Module) -> float:
    # for x < 0 the slope is exp(x / alpha) <= 1 when alpha > 0; alpha < 0 makes it unbounded
    return 1.0 if module.alpha > 0 else math.inf


# max |phi'| of each activation module as configured (its options change the constant)
_MODULE_LIPSCHITZ: dict[type, Callable[[nn.Module], float]] = {
    nn.ReLU: lambda m: 1.0,
    nn.ReLU6: lambda m: 1.0,
    nn.Hardtanh: lambda m: 1.0 if m.max_val > m.min_val else 0.0,  # slope 1 between the bounds
    nn.LeakyReLU: lambda m: max(1.0, abs(m.negative_slope)),
    nn.PReLU: lambda m: max(1.0, float(m.weight.detach().abs().max())),
    nn.ELU: lambda m: max(1.0, abs(m.alpha)),  # alpha e^x for x < 0 approaches alpha at 0-
    nn.CELU: _celu,
    nn.SELU: lambda m: _SELU_SLOPE,
    nn.GELU: lambda m: _GELU_EXACT if m.approximate == "none" else _peak_slope("gelu_tanh"),
    nn.SiLU: lambda m: _peak_slope("silu"),
    nn.Mish: lambda m: _peak_slope("mish"),
    nn.Sigmoid: lambda m: 0.25,
    nn.Tanh: lambda m: 1.0,
    nn.Softplus: lambda m: 1.0,  # sigmoid(beta x) < 1, and slope 1 past the threshold
    nn.Softsign: lambda m: 1.0,  # 1 / (1 + |x|)^2, 1 at 0
    nn.Hardsigmoid: lambda m: 1.0 / 6.0,
    nn.Hardswish: lambda m: 1.5,  # (2x + 3) / 6 on (-3, 3), 1.5 at 3-
    nn.LogSigmoid: lambda m: 1.0,
    nn.Tanhshrink: lambda m: 1.0,  # tanh(x)^2
    nn.Softshrink: lambda m: 1.0,
}
# functional forms: the module class taking the same options in the same order after the input
_FUNCTION_MODULES: dict[Any, type] = {
    F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.hardtanh: nn.Hardtanh,
    F.leaky_relu: nn.LeakyReLU, F.elu: nn.ELU, F.celu: nn.CELU, F.selu: nn.SELU, F.gelu: nn.GELU,
    F.silu: nn.SiLU, F.mish: nn.Mish, torch.sigmoid: nn.Sigmoid, F.sigmoid: nn.Sigmoid,
    torch.tanh: nn.Tanh, F.tanh: nn.Tanh, F.softplus: nn.Softplus, F.softsign: nn.Softsign,
    F.hardsigmoid: nn.Hardsigmoid, F.hardswish: nn.Hardswish, F.logsigmoid: nn.LogSigmoid,
    F.tanhshrink: nn.Tanhshrink, F.softshrink: nn.Softshrink,
    "relu": nn.ReLU, "relu_": nn.ReLU, "sigmoid": nn.Sigmoid, "sigmoid_": nn.Sigmoid, "tanh": nn.Tanh,
    "tanh_": nn.Tanh,
}  # fmt: skip


def activation_lipschitz(module: nn.Module) -> float | None:
    """The Lipschitz constant ``sup |phi'|`` of an activation module with its own options, or None.

    Exact (closed form) except GELU with ``approximate="tanh"``, SiLU and Mish, whose peak slope is
    found numerically and rounded up by 1e-9 relative.

    Example:
        >>> activation_lipschitz(torch.nn.LeakyReLU(3.0)), activation_lipschitz(torch.nn.Hardswish())
        (3.0, 1.5)
    """
    rule = _MODULE_LIPSCHITZ.get(type(module))
    return None if rule is None else float(rule(module))


def function_lipschitz(target: Any, args: tuple = (), kwargs: dict | None = None) -> float | None:
    """The Lipschitz constant of ``target(x, *args, **kwargs)`` (a function or a tensor method name), or None.

    Example:
        >>> function_lipschitz(F.gelu, (), {"approximate": "tanh"}) > function_lipschitz(F.gelu)
        True
    """
    cls = _FUNCTION_MODULES.get(target) if isinstance(target, str) or callable(target) else None
    if cls is None:
        return None
    options = {k: v for k, v in (kwargs or {}).items() if k != "inplace"}
    if not all(isinstance(v, (bool, int, float, str)) for v in (*args, *options.values())):
        return None  # an option computed in the graph: no constant known in advance
    try:
        return activation_lipschitz(cls(*args, **options))
    except (TypeError, ValueError):  # options the module does not take
        return None


ANALYTIC_LIPSCHITZ = {
    "relu": 1.0,
    "leaky_relu": 1.0,
    "elu": 1.0,  # alpha = 1: slope 1 for x > 0, alpha e^x < 1 for x < 0
    "gelu": _GELU_EXACT,
    "silu": 1.0998393200,  # sigma(x)(1 + x(1 - sigma(x))), largest at x ~ 2.3994 (10 digits)
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
        from deepscope._figures import new_figure

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
    if activations is not None and (
        isinstance(activations, str) or not isinstance(activations, (list, tuple)) or not activations
    ):
        expected = "None or a non-empty list of names from ACTIVATIONS or callables"
        raise invalid_parameter("activations", "activation_catalogue", expected, activations)
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
