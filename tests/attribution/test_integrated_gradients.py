import pytest
import torch
from captum.attr import IntegratedGradients

from deepscope.attribution import integrated_gradients
from deepscope.attribution.integrated_gradients import quadrature
from deepscope.errors import InvalidParameterError


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"])
def test_matches_captum_same_rule_and_steps(cnn_and_images, rule):
    model, images = cnn_and_images
    baseline = torch.full_like(images, 0.1)
    ours = integrated_gradients(model, images, target=1, baseline=baseline, steps=20, rule=rule, max_batch=7)
    reference = IntegratedGradients(model).attribute(images, baselines=baseline, target=1, n_steps=20, method=rule)
    # Captum builds its alphas in float32 (torch.linspace(...).tolist()), so nodes differ by ~1e-8
    torch.testing.assert_close(ours.values, reference, rtol=1e-5, atol=1e-9)


def test_trapezoid_is_captums_rescaled(cnn_and_images):
    model, images = cnn_and_images
    ours = integrated_gradients(model, images, target=0, steps=10, rule="riemann_trapezoid")
    reference = IntegratedGradients(model).attribute(images, target=0, n_steps=10, method="riemann_trapezoid")
    # Captum's trapezoid weights are 1/n (sum (n-1)/n); ours are the textbook 1/(n-1)
    torch.testing.assert_close(ours.values * 9 / 10, reference, rtol=1e-5, atol=1e-9)


def test_quadrature_rules_integrate_polynomials():
    for rule in ["gausslegendre", "riemann_trapezoid", "riemann_middle"]:
        alphas, weights = quadrature(rule, 64)
        # ∫₀¹ α² dα = 1/3; the worst of these (trapezoid, h = 1/63) errs by h²/6 ≈ 4.2e-5
        assert abs(float((weights * alphas**2).sum()) - 1 / 3) < 4.5e-5


def test_linear_model_is_exact_with_one_step():
    model = torch.nn.Linear(6, 3).double()
    rows, reference = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    result = integrated_gradients(model, rows, target=2, baseline=reference, steps=1)
    torch.testing.assert_close(result.values, model.weight[2].detach() * (rows - reference))
    assert result.diagnostics["completeness_error"].max() < 1e-10


def test_adaptive_steps_reach_the_tolerance(mlp_and_rows):
    # a smooth model: Gauss-Legendre converges fast (a ReLU net's path gradient is a step function,
    # where every rule converges like 1/m, and a small |ΔF| can make the relative error slow to fall)
    _, rows = mlp_and_rows
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    rows = 3 * rows
    result = integrated_gradients(model, rows, target=[[0], [1]], steps=None, tol=1e-9, initial_steps=2, max_steps=256)
    assert bool(result.diagnostics["converged"].all())
    assert result.diagnostics["completeness_error"].max() < 1e-9
    assert result.diagnostics["steps"].max() > 2  # it did have to refine
    fixed = integrated_gradients(model, rows, target=[[0], [1]], steps=int(result.diagnostics["steps"].max()))
    # the adaptive answer is the fixed-step answer for the examples that needed the most steps
    hardest = result.diagnostics["steps"][0] == result.diagnostics["steps"].max()
    torch.testing.assert_close(result.values[:, hardest], fixed.values[:, hardest])


def test_completeness_on_a_cnn(cnn_and_images):
    model, images = cnn_and_images
    result = integrated_gradients(model, images, steps=None, tol=0.01)
    totals = result.values.flatten(1).sum(1)
    delta = result.diagnostics["delta"]
    assert ((totals - delta).abs() <= 0.01 * delta.abs() + 1e-12).all()


def test_bad_options(cnn_and_images):
    model, images = cnn_and_images
    with pytest.raises(InvalidParameterError, match="rule"):
        integrated_gradients(model, images, rule="simpson")
    with pytest.raises(InvalidParameterError, match="baseline"):
        integrated_gradients(model, images, baseline=torch.zeros(3, 3))


def test_progress_bar_does_not_change_the_answer(mlp_and_rows, capsys):
    model, rows = mlp_and_rows
    quiet = integrated_gradients(model, rows, target=0, steps=16, max_batch=8)
    shown = integrated_gradients(model, rows, target=0, steps=16, max_batch=8, progress=True)
    torch.testing.assert_close(quiet.values, shown.values)
    assert "integrated gradients" in capsys.readouterr().err
