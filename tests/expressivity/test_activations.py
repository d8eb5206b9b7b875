"""Activation catalogue: numerical Lipschitz constants against analytic ones, properties, user callables."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.errors import InvalidParameterError
from deepscope.expressivity import ANALYTIC_LIPSCHITZ, activation_catalogue
from deepscope.expressivity.activations import activation_lipschitz, function_lipschitz


@pytest.fixture(scope="module")
def catalogue():
    return {row["name"]: row for row in activation_catalogue().rows()}


def test_numerical_lipschitz_matches_analytic(catalogue):
    for name, analytic in ANALYTIC_LIPSCHITZ.items():
        # grid step 1e-3: the max of a smooth phi' is found to O(step^2); softplus' = sigmoid reaches
        # 1 - 4.5e-5 at the grid end x = 10
        assert catalogue[name]["lipschitz"] == pytest.approx(analytic, abs=1e-4), name


def test_properties(catalogue):
    assert not catalogue["relu"]["smooth"] and catalogue["relu"]["monotonic"]
    assert catalogue["relu"]["saturates_left"] and not catalogue["relu"]["saturates_right"]
    assert catalogue["tanh"]["zero_centred"] and catalogue["tanh"]["saturates_right"]
    assert not catalogue["gelu"]["monotonic"] and not catalogue["silu"]["monotonic"]
    assert catalogue["gelu"]["smooth"] and catalogue["elu"]["smooth"]
    assert not catalogue["sigmoid"]["zero_centred"] and catalogue["sigmoid"]["value_at_zero"] == 0.5
    assert catalogue["relu"]["critical_sigma_w"] == pytest.approx(math.sqrt(2), abs=1e-5)
    assert catalogue["tanh"]["critical_sigma_w"] == pytest.approx(1.0, abs=1e-5)
    assert catalogue["relu"]["chi_1_at_he"] == pytest.approx(1.0, abs=1e-9)


def test_user_callable():
    def doubled_tanh(x):
        return 2 * torch.tanh(x)

    row = activation_catalogue([doubled_tanh]).rows()[0]
    assert row["name"] == "doubled_tanh" and row["lipschitz"] == pytest.approx(2.0, abs=1e-6)
    # phi'(0) = 2, so chi_1 at q* = 0 is 4 sigma_w^2: critical at sigma_w = 1/2
    assert row["critical_sigma_w"] == pytest.approx(0.5, abs=1e-5)
    assert row["analytic_lipschitz"] is None


def test_plot_and_bad_names():
    assert activation_catalogue(["relu", "gelu"]).plot() is not None
    with pytest.raises(InvalidParameterError):
        activation_catalogue(["nope"])


# every activation with the options that change its constant
CONFIGURED = [
    nn.ReLU(), nn.ReLU6(), nn.Hardtanh(), nn.Hardtanh(-2.0, 0.5), nn.LeakyReLU(), nn.LeakyReLU(3.0),
    nn.LeakyReLU(-1.5), nn.PReLU(init=2.5), nn.ELU(), nn.ELU(alpha=2.0), nn.ELU(alpha=0.3), nn.CELU(),
    nn.CELU(alpha=0.5), nn.CELU(alpha=3.0), nn.SELU(), nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(),
    nn.Mish(), nn.Sigmoid(), nn.Tanh(), nn.Softplus(), nn.Softplus(beta=2.0, threshold=5.0),
    nn.Softplus(beta=0.5), nn.Softsign(), nn.Hardsigmoid(), nn.Hardswish(), nn.LogSigmoid(),
    nn.Tanhshrink(), nn.Softshrink(0.7),
]  # fmt: skip


def _grid_max_slope(module: nn.Module) -> float:
    """The oracle: max |phi'| by autograd on [-60, 60] with step 1e-4 (the grid contains 0 and ±3)."""
    x = torch.linspace(-60.0, 60.0, 1_200_001, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(module.double()(x).sum(), x)
    return float(slope.abs().max())


@pytest.mark.parametrize("module", CONFIGURED, ids=repr)
def test_activation_constants_are_tight_upper_bounds_for_the_configured_module(module):
    constant = activation_lipschitz(module)
    oracle = _grid_max_slope(module)
    # an upper bound: never below the slope actually reached, up to autograd's rounding (its
    # Hardsigmoid backward multiplies by 1/6 rounded to float32, 3e-8 relative too high)
    assert constant >= oracle * (1 - 1e-7)
    # and tight: the grid's step 1e-4 contains every kink (0, ±3, the Hardtanh and Softshrink
    # bounds) and every smooth peak to O(step²) = 1e-8; tails tend to their limit to < 1e-6 by
    # |x| = 60 (Softplus(β=0.5): 1 − σ(30) = 1e-13). 1e-6 separates GELU's tanh approximation
    # (1.128993) from exact GELU (1.128904), 8e-5 apart
    assert constant == pytest.approx(oracle, rel=1e-6)


@pytest.mark.parametrize(
    ("function", "args", "kwargs", "module"),
    [
        (F.gelu, (), {"approximate": "tanh"}, nn.GELU(approximate="tanh")),
        (F.leaky_relu, (2.0,), {}, nn.LeakyReLU(2.0)),
        (F.elu, (), {"alpha": 4.0}, nn.ELU(alpha=4.0)),
        (F.hardtanh, (-3.0, 3.0), {}, nn.Hardtanh(-3.0, 3.0)),
        (F.softplus, (), {"beta": 3.0}, nn.Softplus(beta=3.0)),
        (F.relu, (), {"inplace": True}, nn.ReLU()),
        ("sigmoid", (), {}, nn.Sigmoid()),
    ],
)
def test_functional_forms_get_the_constant_of_their_options(function, args, kwargs, module):
    assert function_lipschitz(function, args, kwargs) == activation_lipschitz(module)


def test_unknown_activations_and_options_have_no_constant():
    assert activation_lipschitz(nn.Linear(2, 2)) is None and activation_lipschitz(nn.Hardshrink()) is None
    assert function_lipschitz(torch.exp) is None
    assert function_lipschitz(F.leaky_relu, (object(),)) is None
    assert activation_lipschitz(nn.CELU(alpha=-1.0)) == math.inf  # exp(x/α) grows without bound
