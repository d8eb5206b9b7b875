import numpy as np
import pytest
import torch

from deepscope.curvature.density import hessian_density, quadrature_nodes
from deepscope.curvature.hvp import HessianOperator, dense_hessian
from deepscope.curvature.lanczos import lanczos_tridiagonal, random_unit_vector
from deepscope.errors import InvalidParameterError

from .conftest import tiny_classifier


def test_density_integrates_to_one_and_its_mean_is_trace_over_n():
    problem = tiny_classifier()
    dense = dense_hessian(problem)
    result = hessian_density(problem, n_vectors=8, n_steps=20)
    grid, density = np.asarray(result.grid), np.asarray(result.density)
    # the grid extends 5σ beyond the extreme nodes: the Gaussian mass outside is < 1e-6
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    mean_on_grid = np.trapezoid(grid * density, grid)
    assert mean_on_grid == pytest.approx(result.mean_eigenvalue, rel=1e-3, abs=1e-6)
    # the mean is a Hutchinson estimate of tr(H)/n with 8 probes: 3 SE covers it (p ≈ 0.997)
    exact = float(torch.trace(dense)) / dense.shape[0]
    assert abs(result.mean_eigenvalue - exact) <= 3 * result.mean_standard_error
    assert result.n_hvps <= 8 * 20


def test_quadrature_is_exact_for_low_degree_polynomials():
    """Gauss quadrature with m nodes integrates t and t² exactly (degree ≤ 2m − 1) for m ≥ 2."""
    problem = tiny_classifier()
    operator = HessianOperator.from_problem(problem)
    probe = random_unit_vector(operator.n_params, 5, dtype=torch.float64)
    nodes, weights = quadrature_nodes(*lanczos_tridiagonal(operator.matvec, probe, 4))
    hv = operator.matvec(probe)
    assert float((weights * nodes).sum()) == pytest.approx(float(probe @ hv), rel=1e-10)
    assert float((weights * nodes**2).sum()) == pytest.approx(float(hv @ hv), rel=1e-10)
    assert weights.sum() == pytest.approx(1.0, rel=1e-12)


def test_enough_steps_recover_the_extreme_eigenvalues():
    problem = tiny_classifier()
    eigenvalues = torch.linalg.eigvalsh(dense_hessian(problem)).numpy()
    result = hessian_density(problem, n_vectors=1, n_steps=eigenvalues.size)
    nodes = np.asarray(result.nodes[0])
    # a full Krylov space: the extreme nodes are the extreme eigenvalues (up to float64 rounding)
    assert nodes.max() == pytest.approx(eigenvalues.max(), rel=1e-8)
    assert nodes.min() == pytest.approx(eigenvalues.min(), rel=1e-6, abs=1e-9)


def test_views_and_validation():
    problem = tiny_classifier()
    result = hessian_density(problem, n_vectors=2, n_steps=5)
    assert result.rows()[0]["n_hvps"] == result.n_hvps and result.plot() is not None
    with pytest.raises(InvalidParameterError, match="'n_steps' parameter of hessian_density"):
        hessian_density(problem, n_steps=0)
