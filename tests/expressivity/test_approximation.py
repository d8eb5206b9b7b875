"""Universal approximation: the interpolating ReLU network meets the h^2 max|f''| / 8 bound; experiment mechanics."""

import math

import pytest
import torch

from deepscope.errors import InvalidParameterError
from deepscope.expressivity import TARGETS, interpolating_relu_network, universal_approximation


@pytest.mark.parametrize("name", ["sine", "bump", "cubic"])
@pytest.mark.parametrize("width", [3, 10, 40])
def test_interpolant_meets_the_interpolation_bound(name, width):
    _, function, curvature = TARGETS[name]
    net = interpolating_relu_network(function, width)
    grid = torch.linspace(0, 1, 4001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        error = float((net(grid)[:, 0] - function(grid)).abs().max())
    assert error <= curvature / (8 * width**2) * (1 + 1e-9)  # the classical linear-interpolation bound
    knots = torch.linspace(0, 1, width + 1, dtype=torch.float64)[:, None]
    torch.testing.assert_close(net(knots)[:, 0].detach(), function(knots), rtol=0, atol=1e-12)  # exact at the knots


def test_experiment_reports_widths_errors_and_theory():
    result = universal_approximation("sine", epsilon=0.2, widths=(2, 16), depths=(1, 2), steps=300, restarts=1)
    assert result.theoretical_width == math.ceil(math.sqrt(4 * math.pi**2 / (8 * 0.2)))
    assert result.constructed_error <= 0.2
    assert len(result.errors) == 2 and all(len(row) == 2 and min(row) > 0 for row in result.errors)
    for depth, row in zip(result.depths, result.errors):
        reached = [w for w, e in zip(result.widths, row) if e <= 0.2]
        assert result.smallest_width[str(depth)] == (min(reached) if reached else None)
    assert result.errors[0][0] > 0.2  # two ReLU units in one layer: at most 3 linear pieces, not a sine period
    assert result.plot() is not None and len(result.rows()) == 4


def test_two_dimensional_and_callable_targets():
    result = universal_approximation("saddle", widths=(4,), steps=50, restarts=1, samples=64)
    assert result.dimension == 2 and result.theoretical_width == 3 and result.constructed_error is None

    def tent(x):
        return 1 - (2 * x[:, 0] - 1).abs()

    tent_result = universal_approximation(tent, widths=(3,), steps=20, restarts=1, epsilon=0.01)
    # max|f''| is estimated by finite differences (huge at the kink): the interpolant still meets epsilon
    assert tent_result.target == "tent" and tent_result.constructed_error <= 0.01


def test_bad_parameters():
    with pytest.raises(InvalidParameterError):
        universal_approximation("nope")
    with pytest.raises(InvalidParameterError):
        universal_approximation("sine", epsilon=0.0)
