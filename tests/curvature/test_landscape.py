import copy

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.curvature.landscape import filter_normalized_direction, loss_interpolation, loss_surface
from deepscope.errors import InvalidParameterError

from .conftest import least_squares


def mlp_problem(with_batchnorm: bool = False, init: bool = True) -> Problem:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    y = (x[:, 0] * x[:, 1] > 0).long()
    torch.manual_seed(0)
    layers = [nn.Linear(4, 16)] + ([nn.BatchNorm1d(16)] if with_batchnorm else []) + [nn.ReLU(), nn.Linear(16, 2)]
    model = nn.Sequential(*layers)
    init_state = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return Problem(model, (x, y), init_state=init_state if init else None)


def test_interpolation_losses_equal_direct_evaluation_and_convex_barrier_is_zero():
    problem, _ = least_squares()
    start = {"weight": torch.zeros_like(problem.model.weight)}
    result = loss_interpolation(problem, start=start, n_points=5, margin=0.5)
    for alpha, loss in zip(result.alphas, result.losses):
        params = {"weight": alpha * problem.model.weight.detach()}
        # same float64 computation, different code path: agreement to rounding
        assert loss == pytest.approx(problem.evaluate(params=params).loss, rel=1e-12)
    # a convex function lies below its chords: the barrier is attained at the end points (0)
    assert result.barrier == pytest.approx(0.0, abs=1e-12)
    assert result.alphas[0] == -0.5 and result.alphas[-1] == 1.5
    assert result.n_forward_samples == len(result.alphas) * 40


def test_permuted_copy_has_equal_end_losses_and_a_positive_barrier():
    problem = mlp_problem()
    permuted = copy.deepcopy(problem.model)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        permuted[0].weight.copy_(permuted[0].weight[order])
        permuted[0].bias.copy_(permuted[0].bias[order])
        permuted[2].weight.copy_(permuted[2].weight[:, order])
    result = loss_interpolation(problem, permuted, n_points=11)
    # a hidden-unit permutation computes the same function (float32 sums in another order: 1e-6)
    assert result.losses[0] == pytest.approx(result.losses[-1], rel=1e-5)
    # averaging unmatched units destroys features: the midpoint is worse than both ends
    assert result.barrier > 0.01
    assert result.accuracies is not None and result.plot() is not None


def test_init_to_final_uses_init_state_and_keep_matches_the_model():
    problem = mlp_problem(with_batchnorm=True)
    kept = loss_interpolation(problem, n_points=3, bn_mode="keep")
    assert kept.endpoints == "init → model"
    assert kept.losses[-1] == pytest.approx(problem.evaluate().loss, rel=1e-6)
    recomputed = loss_interpolation(problem, n_points=3)
    assert recomputed.bn_mode == "recompute"
    # oracle for α=1: re-estimate the BatchNorm statistics on the 64 samples by hand
    manual = copy.deepcopy(problem.model)
    manual[1].reset_running_stats()
    manual[1].momentum = None
    x, y = problem.tensors()
    with torch.no_grad():
        manual.train()(x)
        expected = float(nn.functional.cross_entropy(manual.eval()(x), y))
    assert recomputed.losses[-1] == pytest.approx(expected, rel=1e-6)


def test_missing_init_state_is_explained():
    with pytest.raises(InvalidParameterError, match="'start' parameter of loss_interpolation"):
        loss_interpolation(mlp_problem(init=False))


def test_filter_normalised_direction_matches_filter_norms_and_skips_biases():
    params = {"w": torch.randn(5, 3, 2, 2), "b": torch.randn(5)}
    direction = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    torch.testing.assert_close(direction["w"].flatten(1).norm(dim=1), params["w"].flatten(1).norm(dim=1))
    assert torch.count_nonzero(direction["b"]) == 0


def test_surface_centre_is_the_model_loss_and_a_corner_matches_direct_evaluation():
    problem = mlp_problem()
    result = loss_surface(problem, grid_size=3, span=0.5, seed=4)
    assert result.losses[1][1] == pytest.approx(problem.evaluate().loss, rel=1e-6)
    params = problem.parameters()
    generator = torch.Generator().manual_seed(4)
    first = filter_normalized_direction(params, generator)
    second = filter_normalized_direction(params, generator)
    corner = {n: params[n] - 0.5 * first[n] + 0.5 * second[n] for n in params}
    assert result.losses[0][2] == pytest.approx(problem.evaluate(params=corner).loss, rel=1e-6)
    assert result.n_forward_samples == 9 * 64 and result.plot() is not None and len(result.rows()) == 9
