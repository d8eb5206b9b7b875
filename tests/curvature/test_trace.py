import numpy as np
import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.curvature.hvp import dense_hessian
from deepscope.curvature.trace import hessian_trace
from deepscope.errors import InvalidParameterError


def medium_problem() -> Problem:
    """Softmax regression with 246 parameters (a positive semi-definite Hessian with a decaying
    spectrum, like a network's): large enough that Hutch++ with a small sketch is a genuine estimate."""
    generator = torch.Generator().manual_seed(3)
    scaled = torch.randn(96, 40, generator=generator, dtype=torch.float64) * torch.logspace(
        0.5, -1.5, 40, dtype=torch.float64
    )
    rotation, _ = torch.linalg.qr(torch.randn(40, 40, generator=generator, dtype=torch.float64))
    x = scaled @ rotation  # rotated so that the Hessian is not diagonally dominant (hard for Hutchinson)
    y = (x[:, :3].sum(1) > 0).long() + 2 * (x[:, 3] > 0.5).long() + (x[:, 4] > 1).long()
    torch.manual_seed(3)
    return Problem(nn.Linear(40, 6).double(), (x, y))


@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
@pytest.mark.parametrize("seed", [0, 1])
def test_trace_is_within_three_reported_standard_errors_of_the_dense_trace(method, seed):
    problem = medium_problem()
    exact = float(torch.trace(dense_hessian(problem)))
    result = hessian_trace(problem, rel_tol=0.05, method=method, seed=seed, sketch_size=10, max_hvps=600)
    assert result.converged and result.standard_error > 0
    # the estimate is a mean of i.i.d. samples: |error| > 3 SE has probability ~0.3% per case
    assert abs(result.trace - exact) <= 3 * result.standard_error
    assert result.n_hvps == result.n_probe_samples + (2 * 10 if method == "hutch++" else 0)


def test_hutch_plus_plus_needs_fewer_products_for_the_same_tolerance():
    problem = medium_problem()
    plain = hessian_trace(problem, rel_tol=0.005, method="hutchinson", max_hvps=3000)
    plus = hessian_trace(problem, rel_tol=0.005, method="hutch++", sketch_size=20, max_hvps=3000)
    assert plain.converged and plus.converged
    # deflating the top of a decaying spectrum removes most of the variance (Meyer et al., 2021)
    assert plus.n_hvps < plain.n_hvps / 2


def test_small_operator_gives_the_exact_trace():
    problem = medium_problem()
    exact = float(torch.trace(dense_hessian(problem)))
    result = hessian_trace(problem, sketch_size=500)
    # the sketch would cover the space: the trace is summed from unit vectors (no randomness)
    assert result.standard_error == 0.0 and result.trace == pytest.approx(exact, rel=1e-10)


def test_budget_exhaustion_is_reported():
    result = hessian_trace(medium_problem(), rel_tol=1e-6, method="hutchinson", max_hvps=20)
    assert not result.converged and result.n_hvps == 20
    row = result.rows()[0]
    assert np.isfinite(row["relative_standard_error"]) and result.plot() is not None


def test_invalid_parameters():
    with pytest.raises(InvalidParameterError, match="'rel_tol' parameter of hessian_trace"):
        hessian_trace(medium_problem(), rel_tol=0)
    with pytest.raises(InvalidParameterError, match="'method' parameter"):
        hessian_trace(medium_problem(), method="exact")
