"""Oracles: scipy.stats.kendalltau (τ-b); Ψ and the CMI score on cases with known answers."""

import math

import numpy as np
import pytest
from scipy import stats

from deepscope.errors import DataError
from deepscope.generalization.ranking import conditional_mutual_information, granulated_tau, kendall_tau, rank_measures


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kendall_tau_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, 40).astype(float)  # many ties: exercises the τ-b correction
    b = a + rng.integers(0, 3, 40)
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)


def _grid():
    widths, lrs = np.meshgrid([1, 2, 3], [0.1, 0.2, 0.3], indexing="ij")
    return {"width": widths.ravel().tolist(), "lr": lrs.ravel().tolist()}


def test_granulated_tau_known_cases():
    h = _grid()
    gap = np.array(h["width"]) * 1.0 + np.array(h["lr"]) * 10  # both increase the gap
    psi, parts = granulated_tau(gap, gap, h)
    assert psi == 1.0 and parts == {"width": 1.0, "lr": 1.0}
    # a measure that tracks width but runs against the learning rate: ψ_width = 1, ψ_lr = −1, Ψ = 0
    measure = np.array(h["width"]) * 1.0 - np.array(h["lr"]) * 10
    psi, parts = granulated_tau(measure, gap, h)
    assert parts == {"width": 1.0, "lr": -1.0} and psi == 0.0


def test_cmi_known_cases():
    h = _grid()
    gap = np.array(h["width"]) * 1.0 + np.array(h["lr"]) * 10
    score, parts = conditional_mutual_information(gap, gap, h)
    assert score == pytest.approx(1.0)  # the gap itself: V_μ = V_g in every conditioning
    # a measure that only sees width carries no information once width is conditioned on
    score, parts = conditional_mutual_information(np.array(h["width"]) * 1.0 + 0.0, gap, h)
    assert parts["width"] == pytest.approx(0.0, abs=1e-12) and score == pytest.approx(0.0, abs=1e-12)
    assert 0 < parts[""] < 1


def test_rank_measures_and_bad_input():
    h = _grid()
    gap = np.array(h["width"]) * 1.0
    ranking = rank_measures({"good": gap, "bad": -gap}, gap, h)
    rows = {row["measure"]: row for row in ranking.rows()}
    assert rows["good"]["kendall_tau"] == 1.0 and rows["bad"]["kendall_tau"] == -1.0
    assert math.isnan(rows["good"]["psi_lr"])  # the gap is constant when only lr varies
    with pytest.raises(DataError, match="two models"):
        kendall_tau([1.0], [2.0])
