"""Oracles: a one-feature linear classifier whose flatness radii have closed forms.

The model is ``f(x) = (w1 x, w2 x)`` (no bias) with ``w1 − w2 = Δ > 0`` and inputs ``x = +1``
labelled 0 (all correct). Noise flips every prediction at once when ``u1 − u2 < −Δ``:
* isotropic noise ``N(0, σ²)`` on both weights: drop = Φ(−Δ/(σ√2)) = 0.1 ⇒ σ = Δ/(z₀.₉ √2);
* worst case in the box |u_i| ≤ α: the adversary sets u1 = −α, u2 = +α ⇒ flips iff α > Δ/2.
"""

import math

import pytest
import torch
from scipy import stats
from torch import nn

from deepscope import Problem
from deepscope.generalization._measures._context import build_context
from deepscope.generalization._measures.sharpness import pac_bayes_sigma, sharpness_measures, worst_case_sharpness


def _context():
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.7], [0.2]]))
    x = torch.ones(20, 1)
    y = torch.zeros(20, dtype=torch.long)
    return build_context(Problem(model, (x, y)), max_samples=None, seed=0)


def test_pac_bayes_sigma_matches_closed_form():
    expected = 0.5 / (stats.norm.ppf(0.9) * math.sqrt(2))
    search = pac_bayes_sigma(_context(), samples=400, steps=14)
    # 400 all-or-nothing draws: s.e. of the drop ≈ 0.015, which moves σ by about 10% here
    assert search.radius == pytest.approx(expected, rel=0.15)
    assert search.samples_per_step == 400 and search.forward_passes > 0 and not search.capped


def test_worst_case_sharpness_matches_closed_form():
    search = worst_case_sharpness(_context(), steps=20)
    assert search.radius == pytest.approx(0.25, rel=1e-3)  # bisection over 20 halvings of a 2x bracket


def test_measure_rows_use_the_found_radii():
    ctx = _context()
    rows = {m.name: m for m in sharpness_measures(ctx, samples=50, steps=8)}
    sigma = rows["pac_bayes_sigma"].value
    w_sq = 0.7**2 + 0.2**2
    assert rows["pac_bayes_orig"].value == pytest.approx(w_sq / (4 * sigma**2) + math.log(20 / sigma) + 10)
    assert rows["pac_bayes_flatness"].value == pytest.approx(1 / sigma**2)
    assert math.isnan(rows["pac_bayes_init"].value) and "init_state" in rows["pac_bayes_init"].note
    assert "forward passes" in rows["pac_bayes_sigma"].note


@pytest.mark.parametrize("start", [1e-3, 0.7, 50.0])
def test_bisection_finds_the_threshold_from_either_side(start):
    """drop(r) = r: the largest radius with drop <= 0.1 is 0.1, whether the start is below or above it.

    10 log-space bisection steps on a bracket of ratio 2 pin the radius to within 2**(1/1024) of
    0.1 (relative 7e-4); the tolerance 1e-3 allows that.
    """
    from deepscope.generalization._measures.sharpness import _bisect

    radius, drop, _, capped = _bisect(lambda r: (r, 0.0), 0.0, start, steps=10)
    assert not capped
    assert radius == pytest.approx(0.1, rel=1e-3) and drop <= 0.1
