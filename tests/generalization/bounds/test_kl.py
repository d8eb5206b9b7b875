"""Oracles: direct formula for kl, brute-force grid search for its inversions."""

import math

import numpy as np
import pytest

from deepscope.errors import InvalidParameterError
from deepscope.generalization.bounds.kl import binary_kl, kl_inverse_lower, kl_inverse_upper


def _kl_direct(q, p):
    return sum(a * math.log(a / b) for a, b in ((q, p), (1 - q, 1 - p)) if a > 0)


@pytest.mark.parametrize("q,p", [(0.1, 0.2), (0.5, 0.01), (0.0, 0.3), (1.0, 0.7), (0.25, 0.25)])
def test_binary_kl_matches_the_formula(q, p):
    assert binary_kl(q, p) == pytest.approx(_kl_direct(q, p), abs=1e-14)


def test_binary_kl_is_infinite_at_the_edges():
    assert binary_kl(0.2, 0.0) == math.inf and binary_kl(0.2, 1.0) == math.inf


@pytest.mark.parametrize("q,c", [(0.0, 0.01), (0.03, 0.002), (0.1, 0.05), (0.4, 0.3), (0.9, 0.01), (0.5, 1e-6)])
def test_inversions_match_brute_force(q, c):
    grid = np.linspace(0.0, 1.0, 2_000_001)[1:-1]  # spacing 5e-7, so the grid answer is within 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(grid > 0, 0.0, 0.0)
        kl = (q * np.log(q / grid) if q > 0 else 0.0) + ((1 - q) * np.log((1 - q) / (1 - grid)) if q < 1 else 0.0)
    feasible = grid[kl <= c]
    assert kl_inverse_upper(q, c) == pytest.approx(feasible.max(), abs=1e-6)
    assert kl_inverse_lower(q, c) == pytest.approx(max(feasible.min(), 0.0) if q > 5e-7 else 0.0, abs=1e-6)


def test_inversion_is_tight_to_1e9():
    p = kl_inverse_upper(0.05, 0.02)
    assert binary_kl(0.05, p) == pytest.approx(0.02, abs=1e-9)
    assert binary_kl(0.05, p + 1e-8) > 0.02
    p = kl_inverse_lower(0.3, 0.1)
    assert binary_kl(0.3, p) == pytest.approx(0.1, abs=1e-9)


def test_edge_cases():
    assert kl_inverse_upper(0.2, 100.0) == pytest.approx(1.0, abs=1e-9)
    # kl near p = q is quadratic, so float rounding (1e-16) in kl moves the root by ~1e-8
    assert kl_inverse_upper(0.2, 0.0) == pytest.approx(0.2, abs=1e-7)
    assert kl_inverse_upper(0.0, math.log(2)) == pytest.approx(0.5, abs=1e-12)
    assert kl_inverse_lower(0.2, 100.0) == pytest.approx(0.0, abs=1e-9)


def test_bad_input():
    with pytest.raises(InvalidParameterError, match="'c' parameter of kl_inverse_upper"):
        kl_inverse_upper(0.1, -1.0)
    with pytest.raises(InvalidParameterError, match="'q'"):
        kl_inverse_upper(1.5, 0.1)
