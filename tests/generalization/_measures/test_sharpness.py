"""Oracles: a one-feature linear classifier whose flatness radii have closed forms.

The model is ``f(x) = (w1 x, w2 x)`` (no bias) with ``w1 − w2 = Δ > 0`` and inputs ``x = +1``
labelled 0 (all correct). Noise flips every prediction at once when ``u1 − u2 < −Δ``:
* isotropic noise ``N(0, σ²)`` on both weights: drop = Φ(−Δ/(σ√2)) = 0.1 ⇒ σ = Δ/(z₀.₉ √2);
* worst case in the box |u_i| ≤ α: the adversary sets u1 = −α, u2 = +α ⇒ flips iff α > Δ/2.
"""

import dataclasses
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

    radius, drop, _, capped, upper = _bisect(lambda r: (r, 0.0), 0.0, start, steps=10)
    assert not capped
    assert radius == pytest.approx(0.1, rel=1e-3) and drop <= 0.1


def _naive_pac_bayes_sigma(ctx, *, magnitude_aware=False, samples=8, steps=10):
    """The search without early rejection: every draw of every radius is evaluated in one batch (the
    oracle). Also returns the passes that rejection after each whole draw (the rule before chunked
    rejection: stop once even perfect accuracy on the draws left cannot bring the mean back to 0.1)
    would have spent."""
    from deepscope.generalization._measures.sharpness import _EPSILON, _bisect

    base = float((ctx.problem.forward(ctx.params, ctx.x).argmax(-1) == ctx.y).double().mean())
    generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
    passes = [len(ctx.x), len(ctx.x)]  # the base accuracy; [every draw, draw-level rejection]

    def drop_at(sigma):
        passes[0] += samples * len(ctx.x)
        drops = []
        for _ in range(samples):
            noisy = {}
            for name, w in ctx.params.items():
                z = torch.randn(w.shape, generator=generator, dtype=w.dtype)
                scale = torch.sqrt(sigma**2 * w**2 + _EPSILON**2) if magnitude_aware else sigma
                noisy[name] = w + scale * z
            with torch.no_grad():
                drops.append(base - float((ctx.problem.forward(noisy, ctx.x).argmax(-1) == ctx.y).double().mean()))
        for done in range(1, samples + 1):
            if (sum(drops[:done]) + (samples - done) * (base - 1.0)) / samples > 0.1 + 1e-12:
                break
        passes[1] += done * len(ctx.x)
        values = torch.tensor(drops, dtype=torch.float64)
        return float(values.mean()), float(values.std() / math.sqrt(samples))

    return (*_bisect(drop_at, 0.0, 1e-3 if not magnitude_aware else 1e-2, steps), *passes)


@pytest.mark.parametrize("magnitude_aware", [False, True])
@pytest.mark.parametrize("chunk", [None, 37])
def test_early_rejection_gives_the_same_search_with_fewer_passes(magnitude_aware, chunk):
    ctx = _relu_context()
    search = pac_bayes_sigma(ctx, magnitude_aware=magnitude_aware, samples=8, steps=10, chunk=chunk)
    radius, drop, error, capped, upper, naive_passes, _ = _naive_pac_bayes_sigma(ctx, magnitude_aware=magnitude_aware)
    # bit-identical: same draws, same decisions, the reported drop evaluated on every draw (chunks of
    # 37 examples in margin order, or one cache-sized chunk, against one batch in the data's order)
    assert (search.radius, search.accuracy_drop, search.standard_error, search.capped, search.upper) == (
        radius,
        drop,
        error,
        capped,
        upper,
    )
    assert search.forward_passes < naive_passes  # rejected radii stopped early


@pytest.mark.parametrize("magnitude_aware", [False, True])
def test_the_switch_off_evaluates_every_draw_in_full_and_finds_the_same_radius(magnitude_aware):
    """early_rejection=False is the reference: the same search, and exactly the oracle's passes."""
    on = pac_bayes_sigma(_relu_context(), magnitude_aware=magnitude_aware, steps=6, chunk=50)
    ctx = _relu_context()
    off = pac_bayes_sigma(ctx, magnitude_aware=magnitude_aware, steps=6, chunk=50, early_rejection=False)
    assert dataclasses.replace(on, forward_passes=0) == dataclasses.replace(off, forward_passes=0)
    *_, naive_passes, _ = _naive_pac_bayes_sigma(_relu_context(), magnitude_aware=magnitude_aware, steps=6)
    assert off.forward_passes == naive_passes  # every draw of every radius, and the base pass once
    assert on.forward_passes < off.forward_passes


def _fragile_context(n=600):
    """The ReLU MLP with its output layer scaled by 1e-3: noise of σ = 1e-3 (the search's start)
    leaves its predictions near chance, and the search halves σ six times before a radius keeps
    the drop under 0.1."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[2].weight.mul_(1e-3)
        model[2].bias.zero_()
    x = torch.randn(n, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    return build_context(Problem(model, (x, y)), max_samples=None, seed=3)


def test_chunked_rejection_spends_fewer_passes_where_high_radii_collapse_accuracy():
    """A draw at a collapsed radius drops accuracy by ~0.6, so the rule after whole draws evaluates
    two draws in full per rejected radius; the chunked bound (draws interleaved, low-margin examples
    first) rejects after ~1.3 passes' worth. The found radius is the oracle's, bit for bit."""
    search = pac_bayes_sigma(_fragile_context(), samples=8, steps=4, chunk=40)
    radius, drop, error, _, upper, every_draw, draw_level = _naive_pac_bayes_sigma(
        _fragile_context(), samples=8, steps=4
    )
    assert (search.radius, search.accuracy_drop, search.standard_error, search.upper) == (radius, drop, error, upper)
    assert search.forward_passes < draw_level < every_draw


def test_worst_case_early_rejection_is_the_same_search_with_fewer_passes():
    on = worst_case_sharpness(_relu_context(), steps=6, chunk=30)
    off = worst_case_sharpness(_relu_context(), steps=6, chunk=30, early_rejection=False)
    assert (on.radius, on.accuracy_drop, on.upper, on.backward_passes) == (
        off.radius,
        off.accuracy_drop,
        off.upper,
        off.backward_passes,
    )
    assert on.forward_passes < off.forward_passes  # the accuracy after the ascent of a rejected radius


def test_rows_carry_the_cost_of_their_search():
    rows = sharpness_measures(_context(), samples=4, steps=3)
    assert all(row.seconds > 0 for row in rows)
    assert len({row.seconds for row in rows}) == 3  # σ, σ' and α each share one search's time
    assert all(row.forward_passes > 0 for row in rows)
    assert {row.backward_passes for row in rows if row.name.startswith("pac_bayes")} == {0}
    assert all(row.backward_passes > 0 for row in rows if "sharpness" in row.name)  # the ascent steps


def _relu_context(seed=3, n=300):
    """A tiny ReLU MLP labelled by its own predictions: the drop grows smoothly with the radius."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(n, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    return build_context(Problem(model, (x, y)), max_samples=None, seed=seed)


@pytest.mark.parametrize("magnitude_aware", [False, True])
def test_fewer_bisection_steps_bracket_the_radius_of_more(magnitude_aware):
    """Before/after oracle of the default change (10 -> 5 steps): the noise draws of each evaluation
    do not depend on the step count, so the 5-step search evaluates the first radii of the 10-step
    one, and the 10-step radius lies in the 5-step bracket [radius, upper), whose ratio is
    2^(1/32) (2.2%) — the stated resolution. Exact inequalities, no tolerance."""
    ten = pac_bayes_sigma(_relu_context(), magnitude_aware=magnitude_aware, samples=8, steps=10)
    five = pac_bayes_sigma(_relu_context(), magnitude_aware=magnitude_aware, samples=8, steps=5)
    assert five.radius <= ten.radius < five.upper
    assert five.upper / five.radius == pytest.approx(2 ** (1 / 32), rel=1e-12)
    assert five.forward_passes < ten.forward_passes


def test_worst_case_bracket_and_chunked_ascent():
    """α with 5 steps brackets α with 10; the ascent gradient summed over chunks of 7 examples gives
    the same search as one batch (the loss is a mean: chunks weighted by their share; float32
    summation order can only move a sign of an exactly-zero-ish gradient, which these data avoid)."""
    ten = worst_case_sharpness(_relu_context(), steps=10)
    five = worst_case_sharpness(_relu_context(), steps=5)
    assert five.radius <= ten.radius < five.upper
    chunked = worst_case_sharpness(_relu_context(), steps=5, chunk=7)
    assert (chunked.radius, chunked.accuracy_drop, chunked.upper) == (five.radius, five.accuracy_drop, five.upper)
    assert chunked.backward_passes == five.backward_passes > 0
