"""Trajectory length: exact linear cases, agreement with the exact 1-D partition, growth with weight scale."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import InvalidParameterError
from deepscope.expressivity import linear_regions, trajectory_length


def test_linear_map_stretches_a_segment_by_its_norm_along_it():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    a, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    result = trajectory_length(layer, torch.stack([a, b]), curve="segment", points=100)
    assert result.layers[0]["length"] == pytest.approx(float((b - a).norm()), rel=1e-12)
    expected = float((layer.weight.detach().double() @ (b - a)).norm())
    assert result.layers[-1]["length"] == pytest.approx(expected, rel=1e-12)


def test_circle_through_three_points_has_the_polygon_perimeter():
    points = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # unit circle in the x-y plane
    result = trajectory_length(nn.Identity(), points, points=500)
    assert result.layers[0]["length"] == pytest.approx(2 * 500 * math.sin(math.pi / 500), rel=1e-10)


def test_output_length_matches_the_exact_partition_on_a_segment():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    ends = torch.randn(2, 3) * 2
    regions = linear_regions(net, line=ends)
    # on each piece the output moves at the constant speed |A_r| per unit t, t in [0, 1]
    speeds = np.linalg.norm(regions.output_maps[:, 0], axis=1)
    exact = float((speeds * (regions.vertices[:, 1, 0] - regions.vertices[:, 0, 0])).sum())
    result = trajectory_length(net, ends, curve="segment", points=4096)
    # the polyline cuts the corner at each of the few breakpoints: relative error below 1e-3
    assert result.layers[-1]["length"] == pytest.approx(exact, rel=1e-3)
    assert result.layers[-1]["length"] <= exact * (1 + 1e-12)


@pytest.mark.parametrize(("scale", "grows"), [(3.0, True), (0.5, False)])
def test_length_grows_exponentially_with_a_large_weight_scale(scale, grows):
    torch.manual_seed(2)
    layers = []
    for _ in range(6):
        linear = nn.Linear(64, 64)
        nn.init.normal_(linear.weight, std=scale / math.sqrt(64))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    result = trajectory_length(nn.Sequential(*layers), torch.randn(3, 64), points=512)
    # ReLU halves the variance: the per-layer factor is about scale / sqrt(2) (Raghu et al. 2017)
    assert (result.growth_rate > 1.5) == grows and (result.growth_rate < 0.5) == (not grows)
    assert len(result.rows()) == 8 and result.refinement_change < 0.05
    assert result.plot() is not None


def test_bad_inputs():
    with pytest.raises(InvalidParameterError, match="curve"):
        trajectory_length(nn.Linear(2, 2), torch.randn(3, 2), curve="spiral")
    with pytest.raises(InvalidParameterError, match="collinear"):
        trajectory_length(nn.Linear(2, 2), torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
