import pytest
import torch
from captum.attr import GradientShap

from deepscope.attribution import expected_gradients, gradient_shap, integrated_gradients
from deepscope.errors import InvalidParameterError


def test_linear_model_is_exact_whatever_the_samples():
    model = torch.nn.Linear(4, 2).double()
    rows, references = torch.randn(3, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    result = expected_gradients(model, rows, target=1, references=references, samples=400)
    # E[(x - x')]·w with x' uniform over the references: the mean reference, up to sampling error
    exact = model.weight[1].detach() * (rows - references.mean(0))
    deviation = (result.values.sum(1) - exact.sum(1)).abs()
    assert (deviation <= 5 * result.diagnostics["standard_error"] + 1e-12).all()


def test_single_reference_converges_to_integrated_gradients(mlp_and_rows):
    model, rows = mlp_and_rows
    reference = torch.zeros(1, 5, dtype=torch.float64)
    result = expected_gradients(model, rows, target=0, references=reference, samples=2000, seed=1)
    exact = integrated_gradients(model, rows, target=0, steps=512).values
    # Monte-Carlo over α: each example's total within 5 standard errors of the IG total
    gap = (result.values.sum(1) - exact.sum(1)).abs()
    assert (gap <= 5 * result.diagnostics["standard_error"] + 1e-9).all()


def test_gradient_shap_agrees_with_captum_in_distribution(cnn_and_images):
    model, images = cnn_and_images
    baselines = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    ours = gradient_shap(model, images, target=1, baselines=baselines, samples=300, noise=0.05, seed=0)
    torch.manual_seed(0)
    theirs = GradientShap(model).attribute(images, baselines=baselines, target=1, n_samples=300, stdevs=0.05)
    # different random streams: compare each example's total within 5 combined standard errors
    # (Captum's spread is taken equal to ours: same estimator, same sample count)
    gap = (ours.values.flatten(1).sum(1) - theirs.flatten(1).sum(1)).abs()
    assert (gap <= 5 * 2**0.5 * ours.diagnostics["standard_error"]).all()


def test_references_of_the_wrong_shape(mlp_and_rows):
    model, rows = mlp_and_rows
    with pytest.raises(InvalidParameterError, match="references"):
        expected_gradients(model, rows, references=torch.zeros(3, 4, dtype=torch.float64))
