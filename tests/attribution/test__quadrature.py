"""Quadrature rules of integrated gradients: Captum's fixed rules and the nested Fejér rule."""

import torch

from deepscope.attribution._quadrature import (
    fejer_weights,
    nested_fejer,
    nested_fejer_levels,
    nested_sizes,
    quadrature,
)


def test_quadrature_rules_integrate_polynomials():
    for rule in ["gausslegendre", "riemann_trapezoid", "riemann_middle"]:
        alphas, weights = quadrature(rule, 64)
        # ∫₀¹ α² dα = 1/3; the worst of these (trapezoid, h = 1/63) errs by h²/6 ≈ 4.2e-5
        assert abs(float((weights * alphas**2).sum()) - 1 / 3) < 4.5e-5


def test_fejer_rule_is_interpolatory_and_nested():
    for size in (1, 3, 7, 15, 31):
        alphas, weights = quadrature("fejer2", size)
        # interpolatory on size nodes: exact for α^d, d <= size - 1 (float64 rounding ~1e-15)
        for degree in range(size):
            assert abs(float((weights * alphas**degree).sum()) - 1 / (degree + 1)) < 1e-12
    coarse, _ = quadrature("fejer2", 7)
    fine, fine_weights = quadrature("fejer2", 15)
    assert torch.isclose(fine.unsqueeze(0), coarse.unsqueeze(1), atol=1e-15).any(1).all()  # 7 ⊂ 15
    theta = torch.arange(1, 16, dtype=torch.float64) * torch.pi / 16
    torch.testing.assert_close(fejer_weights(theta, 16), fine_weights)
    assert nested_sizes(2, 1024) == [1, 3, 7, 15, 31, 63, 127, 255, 511, 1023]
    assert nested_sizes(8, 20) == [7, 15]


def test_nested_levels_are_the_fejer_rule_in_evaluation_order():
    levels = list(nested_fejer_levels(4, 31))
    assert [level.size for level in levels] == [3, 7, 15, 31]
    assert [level.new_alphas.numel() for level in levels] == [3, 4, 8, 16]  # only the new nodes
    evaluated = torch.zeros(0, dtype=torch.float64)
    for level in levels:
        evaluated = torch.cat([evaluated, level.new_alphas])
        alphas, weights = quadrature("fejer2", level.size)
        order = evaluated.argsort()
        # the stored nodes (in evaluation order) re-weighted are exactly the level's rule
        torch.testing.assert_close(evaluated[order], alphas, rtol=0, atol=1e-15)
        torch.testing.assert_close(level.weights[order], weights, rtol=0, atol=1e-15)


def test_nested_fejer_reuses_nodes_and_stops_per_example_at_tol():
    # g_i(α) = c_i α^(d_i) on a one-feature path with δ = 1: the exact integral is c_i/(d_i + 1), and
    # a level of N − 1 nodes is exact for d ≤ N − 2, so example i stops at the first exact level
    degrees = torch.tensor([0, 4, 10, 40])
    coefficients = torch.tensor([1.0, 2.0, -3.0, 0.5], dtype=torch.float64)
    exact = coefficients / (degrees + 1)
    calls = []

    def gradients(pending, alphas):
        calls.append((pending.tolist(), alphas.numel()))
        g = coefficients[pending, None] * alphas[None, :] ** degrees[pending, None]
        return g.reshape(1, pending.numel(), alphas.numel(), 1)

    delta = torch.ones(4, 1, dtype=torch.float64)
    result = nested_fejer(gradients, delta, exact.unsqueeze(0), torch.zeros(1, 4, dtype=torch.float64), 1e-10, 3, 31)
    # degree 0 exact at 3 nodes; degree 4 needs 5 nodes -> 7; degree 10 -> 15; degree 40 never exact (cap 31)
    assert result.used.tolist() == [3, 7, 15, 31]
    assert calls == [([0, 1, 2, 3], 3), ([1, 2, 3], 4), ([2, 3], 8), ([3], 16)]
    assert result.gradient_rows == 4 * 3 + 3 * 4 + 2 * 8 + 16
    torch.testing.assert_close(result.values[0, :3, 0], exact[:3], rtol=1e-12, atol=0)
    alphas, weights = quadrature("fejer2", 31)  # the capped example gets the 31-node rule's value
    torch.testing.assert_close(result.values[0, 3, 0], (weights * 0.5 * alphas**40).sum(), rtol=1e-12, atol=0)
