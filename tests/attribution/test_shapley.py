import itertools
import math

import pytest
import torch
from captum.attr import ShapleyValues, ShapleyValueSampling

from deepscope.attribution import shapley
from deepscope.errors import InvalidParameterError


def brute_force(model, row, reference, target):
    """Shapley by the permutation definition: average marginal gain over all M! orders."""
    m = row.numel()
    phi = torch.zeros(m, dtype=torch.float64)
    for order in itertools.permutations(range(m)):
        points = reference.repeat(m + 1, 1)
        for position, j in enumerate(order):
            points[position + 1 :, j] = row[j]
        scores = model(points)[:, target].detach()
        phi[list(order)] += scores[1:] - scores[:-1]
    return phi / math.factorial(m)


def test_exact_matches_brute_force(mlp_and_rows):
    model, rows = mlp_and_rows
    reference = torch.randn(5, dtype=torch.float64)
    result = shapley(model, rows[:2], target=2, baseline=reference)
    for i in range(2):
        expected = brute_force(model, rows[i], reference, 2).detach()
        torch.testing.assert_close(result.values[i], expected)  # float64 sums of ≤ 120 terms
    assert result.diagnostics["completeness_error"].max() < 1e-10


def test_additive_model_gets_weight_times_difference():
    model = torch.nn.Linear(12, 2).double()
    rows, reference = torch.randn(3, 12, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    result = shapley(model, rows, target=[[0], [1]], baseline=reference)
    torch.testing.assert_close(result.values, model.weight.detach()[:, None, :] * (rows - reference))


def test_exact_matches_captum_with_groups(cnn_and_images):
    model, images = cnn_and_images
    groups = (torch.arange(64) // 13).view(1, 8, 8)  # 5 groups of pixels
    ours = shapley(model, images[:2], target=1, feature_groups=groups)
    reference = ShapleyValues(model).attribute(images[:2], target=1, feature_mask=groups[None])
    # same coalition values; Captum accumulates its 5! orders in float32 (~1e-7 absolute here)
    torch.testing.assert_close(ours.values, reference.double(), rtol=1e-5, atol=1e-6)


def test_sampling_beyond_max_exact_is_unbiased_and_efficient(mlp_and_rows):
    model, rows = mlp_and_rows
    exact = shapley(model, rows, target=0)
    sampled = shapley(model, rows, target=0, max_exact=3, samples=200, seed=1)
    assert not bool(sampled.diagnostics["exact"].any())
    # efficiency holds for every sampled order (telescoping sums)
    assert sampled.diagnostics["completeness_error"].max() < 1e-10
    # within 5 standard errors of the exact values per feature (+ a floor for features with zero variance)
    gap = (sampled.values - exact.values).abs()
    assert (gap <= 5 * sampled.diagnostics["standard_error"] + 1e-10).all()
    captum = ShapleyValueSampling(model).attribute(rows, target=0, n_samples=200)
    assert ((captum - exact.values).abs() <= 5 * sampled.diagnostics["standard_error"] + 1e-10).all()


def test_bad_groups(mlp_and_rows):
    model, rows = mlp_and_rows
    with pytest.raises(InvalidParameterError, match="feature_groups"):
        shapley(model, rows, feature_groups=torch.zeros(4, dtype=torch.long))
