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


def test_probes_are_drawn_column_by_column():
    from deepscope.curvature.trace import _rademacher

    like = torch.empty(0, dtype=torch.float32)
    three = _rademacher(1000, 3, torch.Generator().manual_seed(5), like)
    generator = torch.Generator().manual_seed(5)
    ones = [_rademacher(1000, 1, generator, like) for _ in range(3)]
    # the same stream whatever the block: three single draws are the three columns
    assert torch.equal(three, torch.cat(ones, dim=1))
    assert set(three.unique().tolist()) == {-1.0, 1.0} and three.dtype == torch.float32
    assert abs(float(three.mean())) < 0.1  # 3000 fair signs: |mean| > 0.1 is a 5-sigma event


@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
def test_the_estimate_does_not_depend_on_the_memory_block(method, monkeypatch):
    from deepscope.curvature import _memory

    problem = medium_problem()
    options = {"rel_tol": 0.05, "method": method, "seed": 2, "sketch_size": 10, "max_hvps": 300}
    default = hessian_trace(problem, **options)
    monkeypatch.setattr(_memory, "BLOCK_BYTES", 246 * 8)  # one float64 probe of 246 parameters per block
    small = hessian_trace(problem, **options)
    # same probes and products; only the deflation's matrix products are grouped differently
    # (float64, ~250 terms): 1e-10 relative
    assert small.n_hvps == default.n_hvps and small.n_probe_samples == default.n_probe_samples
    assert small.trace == pytest.approx(default.trace, rel=1e-10)
    assert small.standard_error == pytest.approx(default.standard_error, rel=1e-8)


def test_default_sketch_fits_the_memory_block(monkeypatch):
    from deepscope.curvature import _memory

    monkeypatch.setattr(_memory, "BLOCK_BYTES", 3 * 246 * 8)  # three float64 vectors of 246 parameters
    result = hessian_trace(medium_problem(), rel_tol=0.05, max_hvps=200)
    assert result.sketch_size == 3 and result.n_hvps == result.n_probe_samples + 2 * 3
    explicit = hessian_trace(medium_problem(), rel_tol=0.05, max_hvps=200, sketch_size=12)
    assert explicit.sketch_size == 12  # an explicit sketch is the caller's choice
