"""Quadrature rules of integrated gradients: Captum's fixed rules and the nested Fejér rule."""

import torch

from deepscope.attribution._quadrature import fejer_weights, nested_sizes, quadrature


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
