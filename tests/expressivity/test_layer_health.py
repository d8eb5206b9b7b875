"""Layer health: planted dead and saturated units, Jacobian spectrum of a linear net, gradient norms by hand."""

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import DataError
from deepscope.expressivity import layer_health


def test_planted_dead_units_are_found():
    torch.manual_seed(0)
    first = nn.Linear(3, 6)
    with torch.no_grad():
        first.weight.mul_(0.1)
        first.bias.copy_(torch.tensor([-100.0, -100.0, 100.0, 100.0, 100.0, 100.0]))  # two units never fire
    health = layer_health(nn.Sequential(first, nn.ReLU(), nn.Linear(6, 2)), torch.randn(64, 3))
    row = health.rows()[0]
    assert row["dead_fraction"] == pytest.approx(2 / 6)
    assert row["zero_fraction"] == pytest.approx(2 / 6)
    assert row["saturated_fraction"] == 0.0


@pytest.mark.parametrize(("scale", "expected"), [(1000.0, 1.0), (0.01, 0.0)])
def test_tanh_saturation(scale, expected):
    torch.manual_seed(1)
    first = nn.Linear(4, 10)
    with torch.no_grad():
        first.weight.mul_(scale)
        first.bias.zero_()
    health = layer_health(nn.Sequential(first, nn.Tanh(), nn.Linear(10, 3)), torch.randn(256, 4))
    # |w.x| > 2.4 saturates tanh (tanh' < 0.05): with weights x1000 that holds on nearly every input
    assert health.rows()[0]["saturated_fraction"] == pytest.approx(expected, abs=0.1)


def test_jacobian_singular_values_of_a_linear_network():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    health = layer_health(net, torch.randn(6, 5), jacobian_points=3)
    expected = torch.linalg.svdvals((net[1].weight @ net[0].weight).detach()).numpy()
    np.testing.assert_allclose(health.jacobian_singular_values, np.tile(expected, (3, 1)), rtol=1e-5)  # float32
    assert health.layers == []


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_gradient_norms_match_autograd_by_hand():
    torch.manual_seed(3)
    net = Functional()
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    health = layer_health(net, x, y)
    hidden = torch.relu(net.a(x))
    hidden.retain_grad()
    loss = nn.functional.cross_entropy(net.b(hidden), y, reduction="sum")
    loss.backward()
    rms = float(hidden.grad.norm(dim=1).square().mean().sqrt())
    assert health.loss_targets == "given"
    assert health.rows()[0]["gradient_norm"] == pytest.approx(rms, rel=1e-5)
    by_name = {row["name"]: row for row in health.parameters}
    assert by_name["a.weight"]["gradient_norm"] == pytest.approx(float(net.a.weight.grad.norm()) / 20, rel=1e-5)
    assert health.plot() is not None and "Least healthy" in health.summary()


def test_bad_inputs():
    with pytest.raises(DataError):
        layer_health(nn.Linear(2, 2), torch.zeros(0, 2))


class _FunctionalInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 6)
        self.second = nn.Linear(6, 5)
        self.third = nn.Linear(5, 2)

    def forward(self, x):
        hidden = torch.nn.functional.relu(self.first(x), inplace=True)
        return self.third(self.second(hidden).relu_())


def test_in_place_activations_give_the_out_of_place_numbers():
    # oracle: the same network with out-of-place activations; ReLU(inplace=True) used to crash
    # ("a view of a leaf Variable ... in-place operation"), as in torchvision-style ResNets
    torch.manual_seed(0)
    inputs = torch.randn(32, 3)
    in_place = nn.Sequential(nn.Linear(3, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    plain = nn.Sequential(in_place[0], nn.ReLU(), in_place[2])
    got, expected = layer_health(in_place, inputs), layer_health(plain, inputs)
    assert got.rows() == expected.rows()
    np.testing.assert_allclose(got.jacobian_singular_values, expected.jacobian_singular_values, rtol=1e-6)
    assert in_place[1].inplace is True  # the caller's module is unchanged

    functional = _FunctionalInPlace()
    rows = layer_health(functional, inputs).rows()
    assert len(rows) == 2
    hidden = torch.relu(functional.first(inputs))
    # dead units by hand: a ReLU unit whose pre-activation is <= 0 on every input
    assert rows[0]["dead_fraction"] == pytest.approx(float((functional.first(inputs) <= 0).all(0).float().mean()))
    assert rows[1]["zero_fraction"] == pytest.approx(float((functional.second(hidden) <= 0).float().mean()))
