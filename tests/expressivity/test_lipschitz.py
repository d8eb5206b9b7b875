"""Lipschitz interval: exact single-layer cases, conv operator norm against its dense matrix, ordering."""

import math

import pytest
import torch
from torch import nn

from deepscope.errors import UnsupportedModelError
from deepscope.expressivity import lipschitz, operator_norm
from deepscope.testing import make_fixture

# power iteration stops when the estimate moves by < 1e-12 relative; 1e-7 leaves room for slow spectra
RTOL = 1e-7


def test_single_linear_layer_upper_equals_lower_equals_spectral_norm():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    spectral = float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))
    bounds = lipschitz(layer, torch.randn(10, 6))
    assert bounds.upper == pytest.approx(spectral, rel=1e-12)
    assert bounds.lower == pytest.approx(spectral, rel=1e-12)  # the Jacobian is W everywhere


def test_conv_operator_norm_matches_the_dense_matrix():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, padding=1, stride=2).double()
    basis = torch.eye(72, dtype=torch.float64).reshape(72, 2, 6, 6)
    dense = (conv(basis) - conv(torch.zeros(1, 2, 6, 6, dtype=torch.float64))).reshape(72, -1).T.detach()
    norm, evaluations = operator_norm(conv, (2, 6, 6))
    assert norm == pytest.approx(float(torch.linalg.matrix_norm(dense, ord=2)), rel=RTOL)
    assert evaluations > 1
    # the reshaped kernel's norm is a different number: the operator, not the kernel, is measured
    kernel = float(torch.linalg.matrix_norm(conv.weight.detach().reshape(3, -1), ord=2))
    assert abs(kernel - norm) > 1e-3


def test_merged_affine_block_is_tight_and_the_product_is_not():
    torch.manual_seed(2)
    first, second = nn.Linear(5, 7), nn.Linear(7, 3)
    net = nn.Sequential(first, second)
    merged = float(torch.linalg.matrix_norm((second.weight @ first.weight).detach().double(), ord=2))
    product = math.prod(float(torch.linalg.matrix_norm(m.weight.detach().double(), ord=2)) for m in net)
    bounds = lipschitz(net, torch.randn(8, 5))
    assert bounds.upper == pytest.approx(merged, rel=RTOL)
    assert bounds.lower == pytest.approx(merged, rel=RTOL)
    assert bounds.upper_product == pytest.approx(product, rel=1e-12) and product > merged


def test_eval_batchnorm_is_a_diagonal_and_overlapping_max_pool_is_sqrt_windows():
    norm = nn.BatchNorm1d(4)
    with torch.no_grad():
        norm.running_var.copy_(torch.tensor([1.0, 4.0, 0.25, 9.0]))
        norm.weight.copy_(torch.tensor([1.0, -3.0, 0.5, 1.0]))
    bounds = lipschitz(nn.Sequential(norm), input_shape=(4,))
    expected = max(abs(g) / math.sqrt(v + norm.eps) for g, v in [(1, 1), (-3, 4), (0.5, 0.25), (1, 9)])
    assert bounds.upper == pytest.approx(expected, rel=RTOL)
    pooled = lipschitz(nn.Sequential(nn.MaxPool1d(3, stride=1)), input_shape=(1, 10))
    assert pooled.upper == pytest.approx(math.sqrt(3))  # each input sits in up to 3 windows


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(x + self.block(x)))


@pytest.mark.parametrize("kind", ["relu_mlp", "cnn", "sequence", "mlp", "residual"])
def test_upper_bound_is_never_below_the_lower_bound(kind):
    if kind == "residual":
        torch.manual_seed(3)
        model, inputs = Residual(), torch.randn(16, 4)
    else:
        fixture = make_fixture(kind)
        model, inputs = fixture.model, fixture.inputs
    bounds = lipschitz(model, inputs, search_steps=10)
    assert bounds.lower_at_data <= bounds.lower <= bounds.upper * (1 + RTOL)
    assert bounds.upper <= bounds.upper_product * (1 + RTOL)
    assert bounds.evaluations > len(inputs)
    assert bounds.plot() is not None


def test_gradient_ascent_climbs_towards_the_steepest_point_of_a_smooth_net():
    # f(x) = tanh(w.x + b) is steepest where w.x + b = 0 (slope |w|); the data sit far from there
    torch.manual_seed(4)
    layer = nn.Linear(3, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        layer.bias.fill_(4.0)
    net = nn.Sequential(layer, nn.Tanh())
    bounds = lipschitz(net, torch.randn(8, 3) * 0.3, search_points=2, search_steps=40)
    steepest = float(layer.weight.detach().norm())
    assert bounds.lower_at_data < 0.5 * steepest  # tanh' is small where the data are
    assert bounds.lower > 0.95 * steepest and bounds.lower <= bounds.upper * (1 + RTOL)
    assert bounds.upper == pytest.approx(steepest, rel=RTOL)


def test_unsupported_operation():
    class Squares(nn.Module):
        def forward(self, x):
            return x * x

    with pytest.raises(UnsupportedModelError, match="mul"):
        lipschitz(Squares(), input_shape=(3,))


class _Activation(nn.Module):
    """x -> w · phi(x) in one dimension: the Lipschitz constant is |w| · sup |phi'| exactly."""

    def __init__(self, phi):
        super().__init__()
        self.phi, self.out = phi, nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.out.weight.fill_(2.0)

    def forward(self, x):
        return self.out(self.phi(x))


class _Functional(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        if self.kind == "gelu_tanh":
            return torch.nn.functional.gelu(x, approximate="tanh")
        if self.kind == "leaky":
            return torch.nn.functional.leaky_relu(x, 2.5)
        return torch.nn.functional.elu(x, alpha=3.0)


@pytest.mark.parametrize(
    ("model", "constant", "peak"),
    [
        (_Activation(nn.GELU(approximate="tanh")), 2 * 1.1289930686, 1.4185),
        (_Activation(nn.ELU(alpha=2.5)), 2 * 2.5, -1e-3),
        (_Activation(nn.LeakyReLU(4.0)), 2 * 4.0, -1.0),
        (_Activation(nn.SELU()), 2 * 1.7580993408, -1e-3),
        (_Functional("gelu_tanh"), 1.1289930686, 1.4185),
        (_Functional("leaky"), 2.5, -1.0),
        (_Functional("elu"), 3.0, -1e-3),
    ],
    ids=["GELU(tanh)", "ELU(2.5)", "LeakyReLU(4)", "SELU", "F.gelu(tanh)", "F.leaky_relu(2.5)", "F.elu(3)"],
)
def test_upper_bound_uses_the_activation_as_configured(model, constant, peak):
    """The slope reached near the peak (the lower bound) never exceeds the upper bound."""
    inputs = torch.tensor([[peak], [0.5]], dtype=torch.float64)
    bounds = lipschitz(model, inputs, search_steps=0)
    assert bounds.lower <= bounds.upper
    # the constants are exact or rounded up by 1e-9 (GELU(tanh)); 1e-8 covers the 10 digits above
    assert bounds.upper == pytest.approx(constant, rel=1e-8)
    # at x = peak the slope is within 1e-2 of the supremum (ELU: alpha·e^{-1e-3})
    assert bounds.lower == pytest.approx(constant, rel=1e-2)
