import pytest
import torch
from captum.attr import IntegratedGradients

from deepscope.attribution import integrated_gradients
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


# ---- nested Fejér rule and the adaptive mode (issue 14, item 8)


def _smooth_model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()


def test_nested_refinement_evaluates_only_new_nodes(mlp_and_rows):
    _, rows = mlp_and_rows
    model = _smooth_model()
    result = integrated_gradients(model, 3 * rows, target=0, steps=None, tol=1e-7)
    steps = result.diagnostics["steps"].reshape(-1)
    assert steps.max() > 7  # some examples needed refining
    # one row per node per example (a restart at each doubling would cost 3 + 7 + 15 + ... rows);
    # the rest (F(x), F(x') for ΔF, the target probe) is what a one-step fixed call costs beyond its n rows
    overhead = integrated_gradients(model, 3 * rows, target=0, steps=1).model_evaluations - len(rows)
    assert result.model_evaluations == int(steps.sum()) + overhead


def test_adaptive_values_are_the_fixed_fejer_rule_at_the_level_reached(cnn_and_images):
    model, images = cnn_and_images
    result = integrated_gradients(model, images, steps=None, tol=0.001)
    steps = result.diagnostics["steps"].reshape(-1)
    assert steps.max() > 7  # some examples were refined (re-weighting happened)
    for size in steps.unique().tolist():
        rows = steps == size
        fixed = integrated_gradients(model, images[rows], target=result.target[rows], steps=size, rule="fejer2")
        # the stored node gradients re-weighted for the larger rule = evaluating that rule afresh
        torch.testing.assert_close(result.values[rows], fixed.values, rtol=1e-4, atol=1e-6)


def test_adaptive_matches_a_high_step_reference_within_tol(mlp_and_rows, cnn_and_images):
    # oracle: a 1023-node Fejér rule (smooth model: exact to float64 rounding)
    _, rows = mlp_and_rows
    model = _smooth_model()
    tol = 1e-3
    adaptive = integrated_gradients(model, 3 * rows, target=1, steps=None, tol=tol)
    reference = integrated_gradients(model, 3 * rows, target=1, steps=1023, rule="fejer2")
    error = (adaptive.values - reference.values).abs().sum(1) / reference.values.abs().sum(1)
    assert (error <= tol).all()  # every example's attribution vector, in relative L1
    # ReLU CNN (a step-function integrand): the totals match the reference's within tol·|ΔF|
    model, images = cnn_and_images
    adaptive = integrated_gradients(model, images, steps=None, tol=0.01)
    reference = integrated_gradients(model, images, target=adaptive.target, steps=1023, rule="fejer2")
    gap = (adaptive.values.flatten(1).sum(1) - reference.values.flatten(1).sum(1)).abs()
    assert (gap <= 0.01 * adaptive.diagnostics["delta"].reshape(-1).abs() * 1.05).all()  # + the reference's own error
    assert (adaptive.diagnostics["completeness_error"] <= 0.01).all()


def test_tol_with_a_fixed_step_count_is_refused(mlp_and_rows):
    model, rows = mlp_and_rows
    with pytest.raises(InvalidParameterError, match=r"tol.*steps=50"):
        integrated_gradients(model, rows, target=0, steps=50, tol=0.01)
    # the adaptive mode still takes it, and a restarting rule can still be chosen for it
    result = integrated_gradients(model, rows, target=0, steps=None, tol=0.05, rule="gausslegendre")
    assert result.options["tol"] == 0.05 and result.options["rule"] == "gausslegendre"
    assert integrated_gradients(model, rows, target=0, steps=8).options["tol"] is None
