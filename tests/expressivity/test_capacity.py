"""Capacity: region-count bounds on hand-computed cases, the Kac-Rice density against its Gaussian closed form."""

import itertools
import math

import pytest
import torch
from torch import nn

from deepscope.errors import InvalidParameterError
from deepscope.expressivity import capacity, linear_regions, montufar_lower_bound, serra_upper_bound
from deepscope.testing import make_fixture


def brute_force_serra(n0, widths):
    """Serra et al. 2018 Theorem 1 by enumerating every (j_1, ..., j_L) and checking membership in J."""
    total = 0
    for js in itertools.product(*[range(n + 1) for n in widths]):
        ok = all(
            js[layer] <= min([n0, widths[layer]] + [widths[i] - js[i] for i in range(layer)])
            for layer in range(len(widths))
        )
        if ok:
            total += math.prod(math.comb(n, j) for n, j in zip(widths, js))
    return total


def test_serra_bound_one_layer_is_zaslavsky():
    for n in range(1, 8):
        assert serra_upper_bound(2, [n]) == 1 + n + math.comb(n, 2)  # lines in general position
    assert serra_upper_bound(1, [5]) == 6  # 5 breakpoints on a line


def test_serra_bound_hand_computed_and_brute_force():
    # n0 = 2, widths [2, 3]: j1 = 0 -> 7, j1 = 1 -> 2 * 4, j1 = 2 -> 1 * 1: total 16 (worked by hand)
    assert serra_upper_bound(2, [2, 3]) == 16
    for n0, widths in [(1, [2, 2, 2]), (2, [3, 1, 4]), (3, [2, 5, 3]), (2, [4, 4, 4])]:
        assert serra_upper_bound(n0, widths) == brute_force_serra(n0, widths)


def test_montufar_bound_hand_computed():
    assert montufar_lower_bound(2, [4, 4, 3]) == 2**2 * 2**2 * (1 + 3 + 3)
    assert montufar_lower_bound(1, [2, 2, 2]) == 2 * 2 * 3
    assert montufar_lower_bound(3, [2, 5]) is None  # a hidden width below n0: theorem does not apply
    assert montufar_lower_bound(2, [4, 4, 3]) <= serra_upper_bound(2, [4, 4, 3])


def test_measured_regions_never_exceed_the_slice_bound():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    points = torch.randn(3, 4) * 3
    regions = linear_regions(net, plane=points, margin=2.0)
    result = capacity(net, points, regions=regions)
    assert result.widths == [6, 5]
    assert result.slice_dim == 2 and result.measured_regions == regions.count
    assert regions.count <= result.slice_serra_upper == serra_upper_bound(2, [6, 5])
    assert result.serra_upper == serra_upper_bound(4, [6, 5])
    assert result.parameters == sum(p.numel() for p in net.parameters())
    rows = result.rows()
    assert rows[0]["quantity"] == "parameters"
    assert result.plot() is not None


def test_kac_rice_density_matches_the_gaussian_closed_form():
    # one hidden layer, x ~ N(0, I_d): unit z = w.x + b is N(b, |w|^2), so E[|grad z . u| delta(z)]
    # = phi(b / |w|) / |w| * |w| E|u_1| with E|u_1| = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)).
    torch.manual_seed(1)
    d, n = 3, 20
    net = nn.Sequential(nn.Linear(d, n), nn.ReLU(), nn.Linear(n, 1))
    x = torch.randn(4000, d)
    w, b = net[0].weight.detach().double(), net[0].bias.detach().double()
    mean_abs_u = math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d + 1) / 2))
    phi = torch.exp(-0.5 * (b / w.norm(dim=1)) ** 2) / math.sqrt(2 * math.pi)
    expected = float(phi.sum()) * mean_abs_u
    result = capacity(net, x[:256])
    # 256 points: Monte-Carlo error (reported standard error) plus kernel-smoothing bias (a few %)
    tolerance = 4 * result.hanin_rolnick_standard_error + 0.05 * expected
    assert result.hanin_rolnick_density == pytest.approx(expected, abs=tolerance)


def test_smooth_and_pooled_models_are_flagged():
    smooth = capacity(make_fixture("mlp").model, make_fixture("mlp").inputs)
    assert not smooth.piecewise_linear and smooth.serra_upper is None
    cnn = capacity(make_fixture("cnn").model, make_fixture("cnn").inputs)
    assert cnn.widths == [4 * 8 * 8, 4 * 4 * 4]
    assert any("max-pool" in note for note in cnn.notes)
    with pytest.raises(InvalidParameterError):
        capacity(nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU()))


def test_kac_rice_density_matches_exact_breakpoint_counts_of_a_deep_net():
    # Hanin & Rolnick's Kac-Rice density is the expected number of breakpoints per unit length on
    # short segments starting at data points in random directions: count them exactly
    torch.manual_seed(0)
    d = 4
    net = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    x = torch.randn(2000, d)
    estimate = capacity(net, x[:256])
    generator = torch.Generator().manual_seed(1)
    length, segments, breakpoints = 0.2, 150, 0
    for start in x[1000 : 1000 + segments]:
        direction = torch.randn(d, generator=generator)
        end = start + length * direction / direction.norm()
        breakpoints += linear_regions(net, line=torch.stack([start, end])).count - 1
    measured = breakpoints / (segments * length)
    # counts are Poisson-like (SE sqrt(count) / total length); the Gaussian kernel for delta(z)
    # smooths each unit's density at 0, a bias of a few per cent
    measured_se = math.sqrt(max(breakpoints, 1)) / (segments * length)
    spread = 3 * math.hypot(measured_se, estimate.hanin_rolnick_standard_error)
    assert abs(measured - estimate.hanin_rolnick_density) <= spread + 0.1 * estimate.hanin_rolnick_density


def test_whole_space_bounds_are_left_out_with_a_note_when_their_programme_is_too_long(monkeypatch):
    # oracle: the step count L * (n0 + 1)^2 by hand; the slice bounds (n0 = 2) are still exact
    import sys

    module = sys.modules["deepscope.expressivity.capacity"]

    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4), torch.nn.ReLU())
    inputs = torch.randn(16, 6)
    assert capacity(net, inputs).serra_upper == serra_upper_bound(6, [5, 4])
    steps = 2 * (6 + 1) ** 2  # 98
    monkeypatch.setattr(module, "MAX_BOUND_STEPS", steps - 1)
    plane = linear_regions(net, inputs, plane=inputs[:3])
    result = capacity(net, inputs, regions=plane)
    assert result.serra_upper is None and result.montufar_lower is None
    assert any("about 98 big-integer steps for 6 inputs and 2 ReLU layers" in note for note in result.notes)
    assert result.slice_serra_upper == serra_upper_bound(2, [5, 4])
    assert "regions upper bound (Serra 2018)" not in [row["quantity"] for row in result.rows()]
