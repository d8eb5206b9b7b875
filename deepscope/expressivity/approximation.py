"""Universal approximation experiment: the smallest width that reaches an error, trained and by construction."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._validation import check_float, check_int
from deepscope.errors import invalid_parameter
from deepscope.results import Result

__all__ = ["TARGETS", "ApproximationExperiment", "universal_approximation", "interpolating_relu_network"]

_NAME = "universal_approximation"

TARGETS: dict[str, tuple[int, Callable[[torch.Tensor], torch.Tensor], float | None]] = {
    # name: (input dimension, f on [0, 1]^d, max |f''| for the 1-D interpolation bound)
    "sine": (1, lambda x: torch.sin(2 * math.pi * x[:, 0]), 4 * math.pi**2),
    "bump": (1, lambda x: torch.exp(-50 * (x[:, 0] - 0.5) ** 2), 100.0),  # max |f''| = 100 at the centre
    "cubic": (1, lambda x: 4 * (x[:, 0] - 0.5) ** 3, 12.0),
    "saddle": (2, lambda x: (2 * x[:, 0] - 1) * (2 * x[:, 1] - 1), None),
    "ripple": (2, lambda x: torch.sin(2 * math.pi * (x[:, 0] ** 2 + x[:, 1] ** 2) ** 0.5), None),
}


@dataclasses.dataclass(frozen=True)
class ApproximationExperiment(Result):
    """Sup-norm error of trained ReLU networks of increasing width on a target, next to the theory.

    Attributes:
        target, dimension, epsilon: the set-up.
        depths, widths: hidden-layer counts and widths tried.
        errors: ``errors[i][j]``: best sup error on a dense grid of ``[0, 1]^d`` at ``depths[i]``,
            ``widths[j]``.
        smallest_width: per depth (as a string key), the smallest width whose error is <= epsilon
            (None if none).
        theoretical_width: 1-D: ``ceil(sqrt(max|f''| / (8 epsilon)))``, the width of the one-hidden-
            layer ReLU network that interpolates ``f`` at uniform knots, whose error is at most
            ``max|f''| h^2 / 8`` (``h`` = 1 / width). 2-D: ``d + 1`` = 3, the minimal width at which
            deep ReLU networks are universal (Hanin & Sellke, 2017).
        constructed_error: the sup error of that interpolating network (1-D; it meets the bound).
        steps, restarts: optimisation budget per width.
    """

    target: str
    dimension: int
    epsilon: float
    depths: list[int]
    widths: list[int]
    errors: list[list[float]]
    smallest_width: dict[str, int | None]
    theoretical_width: int
    constructed_error: float | None
    steps: int
    restarts: int

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"depth": d, "width": w, "sup_error": e, "reaches_epsilon": e <= self.epsilon}
            for d, errors in zip(self.depths, self.errors)
            for w, e in zip(self.widths, errors)
        ]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(5.0, 3.2) if ax is None else (ax.figure, ax)
        for depth, errors in zip(self.depths, self.errors):
            ax.loglog(self.widths, errors, "o-", label=f"trained, depth {depth}")
        ax.axhline(self.epsilon, color="grey", linestyle="--", label="epsilon")
        ax.axvline(self.theoretical_width, color="C3", linestyle=":", label="theory")
        ax.set_xlabel("width")
        ax.set_ylabel("sup error")
        ax.set_title(f"{self.target}: smallest width reaching epsilon by depth {self.smallest_width}", fontsize=8)
        ax.legend(fontsize=7)
        return figure


def interpolating_relu_network(function: Callable[[torch.Tensor], torch.Tensor], width: int) -> nn.Sequential:
    """The one-hidden-layer ReLU network of ``width`` units that interpolates ``f`` at ``width + 1`` uniform knots on [0, 1].

    ``g(x) = f(0) + s_1 relu(x) + sum_{j >= 1} (s_{j+1} - s_j) relu(x - j h)`` with ``s_j`` the slope
    on the j-th interval; exact by construction, so its error is the interpolation error
    ``<= max|f''| h^2 / 8``.

    Example:
        >>> net = interpolating_relu_network(lambda x: x[:, 0] ** 2, 4)
        >>> float(net(torch.tensor([[0.5]], dtype=torch.float64)))
        0.25
    """
    check_int(width, "width", "interpolating_relu_network", minimum=1)
    knots = torch.linspace(0.0, 1.0, width + 1, dtype=torch.float64)
    values = function(knots[:, None])
    slopes = (values[1:] - values[:-1]) / (knots[1:] - knots[:-1])
    hidden = nn.Linear(1, width).double()
    output = nn.Linear(width, 1).double()
    with torch.no_grad():
        hidden.weight.fill_(1.0)
        hidden.bias.copy_(-knots[:-1])
        output.weight.copy_(torch.cat([slopes[:1], slopes[1:] - slopes[:-1]])[None])
        output.bias.fill_(float(values[0]))
    return nn.Sequential(hidden, nn.ReLU(), output)


def universal_approximation(
    target: str | Callable = "sine",
    *,
    epsilon: float = 0.05,
    widths: Sequence[int] = (2, 4, 8, 16, 32, 64),
    depths: Sequence[int] = (1,),
    dimension: int | None = None,
    steps: int = 1500,
    restarts: int = 2,
    learning_rate: float = 1e-2,
    samples: int = 512,
    seed: int = 0,
) -> ApproximationExperiment:
    """Train ReLU networks of increasing width on a target and find the smallest width with sup error <= epsilon.

    Universal approximation (Cybenko, 1989; Hornik, 1991; Leshno et al., 1993): one hidden layer of
    enough ReLU units approximates any continuous function on a compact set. How many is enough is
    the question: in 1-D, the piecewise-linear interpolant with ``n`` uniform pieces is a width-``n``
    ReLU network with error ``<= max|f''| / (8 n^2)``, so width ``sqrt(max|f''| / (8 eps))``
    suffices; gradient training usually needs more, and depth can trade for width (Telgarsky, 2016).
    Each (depth, width) is trained ``restarts`` times
    (Adam, full batch, mean squared error on ``samples`` uniform points) and the best is kept.

    Args:
        target: a name from :data:`TARGETS` or a callable ``f(x: (n, d)) -> (n,)`` on ``[0, 1]^d``.
        epsilon: the sup-norm error to reach. widths: widths to try (increasing).
        depths: numbers of hidden layers to try (each with every width).
        dimension: input dimension for a callable target (1 or 2). steps, restarts, learning_rate,
        samples: training budget. seed: random seed.

    Example:
        >>> result = universal_approximation("cubic", widths=(2, 8), steps=50, restarts=1)
        >>> result.theoretical_width
        6
    """
    epsilon = check_float(epsilon, "epsilon", _NAME, minimum=0.0, strict_minimum=True)
    for name, values in (("depths", depths), ("widths", widths)):  # a bare number was a raw TypeError
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, range)) or not values:
            raise invalid_parameter(name, _NAME, "a non-empty list of ints >= 1", values)
    depths = [check_int(d, "depths", _NAME, minimum=1) for d in depths]
    check_int(steps, "steps", _NAME, minimum=1)
    check_int(restarts, "restarts", _NAME, minimum=1)
    check_int(samples, "samples", _NAME, minimum=2)
    check_float(learning_rate, "learning_rate", _NAME, minimum=0.0, strict_minimum=True)
    widths = [check_int(w, "widths", _NAME, minimum=1) for w in widths]
    if isinstance(target, str):
        if target not in TARGETS:
            raise invalid_parameter("target", _NAME, f"one of {sorted(TARGETS)} or a callable", target)
        name, (dim, function, curvature) = target, TARGETS[target]
    elif callable(target):
        dim = check_int(dimension if dimension is not None else 1, "dimension", _NAME, minimum=1, maximum=2)
        name, function, curvature = getattr(target, "__name__", "callable"), target, None
    else:
        raise invalid_parameter("target", _NAME, "a name or a callable", target)
    grid = _grid(dim, 2001 if dim == 1 else 101)
    exact = function(grid)
    generator = torch.Generator().manual_seed(seed)
    train_x = torch.rand(samples, dim, generator=generator, dtype=torch.float64)
    train_y = function(train_x)
    errors: list[list[float]] = []
    for depth in depths:
        row = []
        for width in widths:
            best = math.inf
            for restart in range(restarts):
                torch.manual_seed(seed * 7919 + width * 31 + depth * 1009 + restart)
                net = _mlp(dim, width, depth)
                optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
                for _ in range(steps):
                    optimiser.zero_grad()
                    loss = (net(train_x)[:, 0] - train_y).square().mean()
                    loss.backward()
                    optimiser.step()
                with torch.no_grad():
                    best = min(best, float((net(grid)[:, 0] - exact).abs().max()))
            row.append(best)
        errors.append(row)
    smallest = {}
    for depth, row in zip(depths, errors):
        reached = [w for w, e in zip(widths, row) if e <= epsilon]
        smallest[str(depth)] = min(reached) if reached else None
    constructed_error = None
    if dim == 1:
        if curvature is None:  # a callable: estimate max |f''| by finite differences on the grid
            values = exact.numpy()
            step = float(grid[1, 0] - grid[0, 0])
            curvature = float(np.abs(np.diff(values, 2)).max() / step**2)
        theoretical = max(1, math.ceil(math.sqrt(curvature / (8 * epsilon))))
        constructed = interpolating_relu_network(function, theoretical)
        with torch.no_grad():
            constructed_error = float((constructed(grid)[:, 0] - exact).abs().max())
    else:
        theoretical = dim + 1
    return ApproximationExperiment(
        target=name,
        dimension=dim,
        epsilon=epsilon,
        depths=depths,
        widths=widths,
        errors=errors,
        smallest_width=smallest,
        theoretical_width=theoretical,
        constructed_error=constructed_error,
        steps=steps,
        restarts=restarts,
    )


def _grid(dimension: int, points: int) -> torch.Tensor:
    axis = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    if dimension == 1:
        return axis[:, None]
    u, v = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=1)


def _mlp(dimension: int, width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    previous = dimension
    for _ in range(depth):
        layers += [nn.Linear(previous, width), nn.ReLU()]
        previous = width
    layers.append(nn.Linear(previous, 1))
    return nn.Sequential(*layers).double()
