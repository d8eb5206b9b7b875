"""Activation catalogue: numerical Lipschitz constants against analytic ones, properties, user callables."""

import math

import pytest
import torch

from deepscope.errors import InvalidParameterError
from deepscope.expressivity import ANALYTIC_LIPSCHITZ, activation_catalogue


@pytest.fixture(scope="module")
def catalogue():
    return {row["name"]: row for row in activation_catalogue().rows()}


def test_numerical_lipschitz_matches_analytic(catalogue):
    for name, analytic in ANALYTIC_LIPSCHITZ.items():
        # grid step 1e-3: the max of a smooth phi' is found to O(step^2); softplus' = sigmoid reaches
        # 1 - 4.5e-5 at the grid end x = 10; the SiLU constant is tabulated to 4 digits
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
