"""Oracle: brute-force search of max{p : BinomCDF(k; n, p) >= delta} with scipy.stats.binom."""

import numpy as np
import pytest
from scipy import stats

from deepscope.errors import DataError, InvalidParameterError
from deepscope.generalization.bounds.test_set import test_set_bound as bound_of


@pytest.mark.parametrize("k,n,delta", [(0, 50, 0.05), (5, 1000, 0.05), (30, 200, 0.01), (99, 100, 0.1), (7, 7, 0.05)])
def test_matches_brute_force_binomial_search(k, n, delta):
    grid = np.linspace(0.0, 1.0, 1_000_001)  # spacing 1e-6: the brute-force answer is within 1e-6
    feasible = grid[stats.binom.cdf(k, n, grid) >= delta]
    result = bound_of(k, n, delta)
    assert result.bound == pytest.approx(feasible.max(), abs=1e-6)
    assert result.kl_bound >= result.bound - 1e-9  # the Chernoff relaxation is never tighter
    assert result.empirical_error == k / n


def test_monotone_in_delta_and_errors():
    assert bound_of(3, 100, 0.01).bound > bound_of(3, 100, 0.1).bound
    assert bound_of(4, 100, 0.05).bound > bound_of(3, 100, 0.05).bound


def test_bad_input():
    with pytest.raises(DataError, match="empty"):
        bound_of(0, 0, 0.05)
    with pytest.raises(InvalidParameterError, match="delta"):
        bound_of(1, 10, 1.5)
    with pytest.raises(InvalidParameterError, match="errors"):
        bound_of(11, 10, 0.05)
