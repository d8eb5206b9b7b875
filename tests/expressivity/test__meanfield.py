"""Mean-field maps against closed forms: ReLU's length map, fixed point and chi_1, and the arc-cosine
kernel for the correlation map (Cho & Saul, 2009); the identity keeps correlations unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from deepscope.expressivity._meanfield import (
    chi_1,
    correlation_map,
    correlation_slope,
    derivative,
    fixed_point,
    gaussian_nodes,
    length_map,
)

# the trapezoid rule on N(0, 1) is accurate to ~1e-9 for these smooth/piecewise-linear integrands;
# the polar pair rule to ~1e-6 for ReLU itself, but its derivative is a step along rays through the
# origin that a 720-angle rule places to within ~1/720 of a half-turn (about 5e-4 measured): 1e-3 there


def test_the_nodes_integrate_gaussian_moments():
    z, w = gaussian_nodes()
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float((w * z**2).sum()) == pytest.approx(1.0, abs=1e-6)
    assert float((w * (z > 0)).sum()) == pytest.approx(0.5, abs=1e-12)  # no node on 0


def test_relu_length_map_fixed_point_and_chi_1():
    assert length_map(torch.relu, 3.0, 1.2, 0.5) == pytest.approx(1.2**2 * 3.0 / 2 + 0.25, rel=1e-6)
    assert fixed_point(torch.relu, 1.0, 0.5) == pytest.approx(0.25 / (1 - 0.5), rel=1e-6)
    assert (
        fixed_point(torch.relu, 2.0, 0.0) == 0.0 or fixed_point(torch.relu, 2.0, 0.0) == math.inf
    )  # critical: no finite q*
    assert fixed_point(torch.relu, 1.3, 0.0) == 0.0  # variance collapses below sigma_w^2 = 2
    assert fixed_point(torch.relu, 1.5, 0.1) == math.inf  # and diverges above it (1.5^2 > 2)
    assert chi_1(torch.relu, 1.0, 1.3) == pytest.approx(1.3**2 / 2, rel=1e-6)


def test_derivative_by_autograd():
    x = torch.tensor([-1.0, 0.5, 2.0])
    assert torch.allclose(derivative(torch.tanh, x), 1 - torch.tanh(x.double()) ** 2)
    assert derivative(torch.relu, x).tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("c", [-0.5, 0.0, 0.3, 0.9])
def test_relu_correlation_map_is_the_arc_cosine_kernel(c):
    expected = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
    q1, q2, new_c = correlation_map(torch.relu, 2.0, 2.0, c, math.sqrt(2.0), 0.0)
    assert q1 == pytest.approx(2.0, rel=1e-6) and q2 == pytest.approx(2.0, rel=1e-6)
    assert new_c == pytest.approx(expected, abs=1e-5)
    assert correlation_slope(torch.relu, 2.0, c, 1.0) == pytest.approx(
        (math.pi - math.acos(c)) / (2 * math.pi), abs=1e-3
    )


def test_the_identity_keeps_correlations():
    _, _, new_c = correlation_map(lambda x: x, 1.0, 4.0, 0.4, 1.0, 0.0)
    assert new_c == pytest.approx(0.4, abs=1e-6)
