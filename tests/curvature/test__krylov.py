"""Oracle: the Lanczos building blocks against ``numpy.linalg.eigh`` on small symmetric matrices.

Every case is float64 and small (n ≤ 8), so a Lanczos run that spans the whole space is exact up to
rounding: ``atol=1e-10`` leaves a margin of about 10⁴ over n·‖A‖·eps ≈ 6e-15 for these spectra.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepscope.curvature import _krylov
from deepscope.errors import DeepscopeError

EIGENVALUES = np.array([-3.0, -1.0, 0.5, 2.0, 4.0, 7.0])  # distinct, so every eigenvector is unique up to sign


def _matrix(eigenvalues=EIGENVALUES, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return torch.from_numpy(q @ np.diag(eigenvalues) @ q.T)


def _run(matrix: torch.Tensor, *, k: int, which: str, locked=None, max_iter=None, tol=1e-12):
    n = matrix.shape[0]
    start = _krylov.random_unit_vector(n, 1, dtype=torch.float64)  # not orthogonal to the locked vectors:
    locked = torch.zeros(n, 0, dtype=torch.float64) if locked is None else locked  # the run must do it itself
    return _krylov.lanczos_run(
        lambda v: matrix @ v,
        n,
        start,
        k=k,
        which=which,
        tol=tol,
        max_iter=max_iter or n,
        seed=1,
        locked=locked,
        bar=None,
    )


def test_random_unit_vector_is_unit_reproducible_and_rademacher_is_plus_minus_one_over_root_n():
    a = _krylov.random_unit_vector(9, 5, dtype=torch.float32)
    assert a.dtype == torch.float32 and float(a.norm()) == pytest.approx(1.0, abs=1e-6)  # float32 rounding
    assert torch.equal(a, _krylov.random_unit_vector(9, 5, dtype=torch.float32))
    assert not torch.equal(a, _krylov.random_unit_vector(9, 6, dtype=torch.float32))
    r = _krylov.random_unit_vector(9, 5, dtype=torch.float64, rademacher=True)
    assert torch.allclose(r.abs(), torch.full((9,), 1 / 3, dtype=torch.float64), atol=1e-15)


def test_orthogonalise_leaves_exactly_the_part_outside_the_basis():
    basis, _ = torch.linalg.qr(torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    outside = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    outside = outside - basis @ (basis.T @ outside)
    w = basis @ torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64) + outside
    assert torch.allclose(_krylov.orthogonalise(w, basis), outside, atol=1e-12)


def test_tridiagonal_and_wanted_by_hand():
    expected = np.array([[1.0, 4.0, 0.0], [4.0, 2.0, 5.0], [0.0, 5.0, 3.0]])
    assert np.array_equal(_krylov._tridiagonal([1.0, 2.0, 3.0], [4.0, 5.0, 99.0]), expected)  # extra beta unused
    assert np.array_equal(_krylov._tridiagonal([1.5], []), np.array([[1.5]]))
    assert list(_krylov._wanted(5, 2, "largest")) == [4, 3]
    assert list(_krylov._wanted(5, 2, "smallest")) == [0, 1]
    assert list(_krylov._wanted(5, 2, "both")) == [4, 3, 0, 1]
    assert list(_krylov._wanted(3, 2, "both")) == [2, 1, 0]  # index 1 is not wanted twice


def test_error_bounds_take_the_smaller_of_the_residual_and_the_gap_bound():
    values = np.array([0.0, 1.0, 3.0])
    bounds = _krylov._error_bounds(values, np.array([2, 0]), np.array([0.1, 2.0]))
    # value 3: gap 2, 0.1²/2 = 0.005 < 0.1; value 0: gap 1, 2²/1 = 4 > 2, so the residual stays
    assert bounds == pytest.approx([0.005, 2.0], abs=1e-15)


def test_a_run_over_the_whole_space_is_exact():
    matrix = _matrix()
    run = _run(matrix, k=6, which="largest")  # k = n: never 'enough' pairs early, so it exhausts the space
    assert run.converged and run.exhausted
    assert np.allclose(run.values, EIGENVALUES, atol=1e-10)
    vectors = run.ritz_vectors(range(6))
    assert torch.allclose(matrix @ vectors, vectors * torch.from_numpy(run.values[run.wanted]), atol=1e-10)


@pytest.mark.parametrize(("which", "expected"), [("largest", [7.0, 4.0]), ("smallest", [-3.0, -1.0])])
def test_the_wanted_pairs_converge_to_the_extreme_eigenpairs(which, expected):
    matrix = _matrix()
    run = _run(matrix, k=2, which=which, tol=1e-10)
    assert run.converged
    assert run.values[run.wanted] == pytest.approx(expected, abs=1e-8)  # tol 1e-10 relative to |λ| ≤ 7
    vector = run.ritz_vectors([0])[:, 0]
    assert torch.allclose(matrix @ vector, expected[0] * vector, atol=1e-6)  # residual ≈ sqrt(error bound)


def test_locked_vectors_are_deflated_out_of_the_run():
    matrix = _matrix()
    _, vectors = np.linalg.eigh(matrix.numpy())
    locked = torch.from_numpy(vectors[:, [5, 4]].copy())  # the eigenvectors of 7 and 4
    run = _run(matrix, k=4, which="largest", locked=locked)
    assert run.exhausted and run.basis.shape[1] == 4  # the complement has dimension 6 - 2
    assert np.allclose(run.values, [-3.0, -1.0, 0.5, 2.0], atol=1e-10)
    assert torch.allclose(locked.T @ run.basis, torch.zeros(2, 4, dtype=torch.float64), atol=1e-12)


def test_an_invariant_start_restarts_orthogonally_and_still_finds_the_spectrum():
    matrix = _matrix()
    _, vectors = np.linalg.eigh(matrix.numpy())
    start = torch.from_numpy(vectors[:, 2].copy())  # an eigenvector: beta is 0 after the first step
    locked = torch.zeros(6, 0, dtype=torch.float64)
    run = _krylov.lanczos_run(
        lambda v: matrix @ v, 6, start, k=6, which="largest", tol=1e-12, max_iter=6, seed=3, locked=locked, bar=None
    )
    assert run.exhausted and np.allclose(run.values, EIGENVALUES, atol=1e-10)


def test_a_non_finite_product_is_refused():
    with pytest.raises(DeepscopeError, match="finite"):
        _krylov.lanczos_run(
            lambda v: v * math.nan, 4, torch.ones(4, dtype=torch.float64), k=1, which="largest", tol=1e-6,
            max_iter=4, seed=0, locked=torch.zeros(4, 0, dtype=torch.float64), bar=None,
        )  # fmt: skip


def test_tridiagonal_steps_reproduce_the_spectrum_and_the_quadrature_weights():
    matrix = _matrix()
    start = _krylov.random_unit_vector(6, 2, dtype=torch.float64)
    alphas, betas = _krylov.lanczos_tridiagonal(lambda v: matrix @ v, start, steps=50)  # capped at n
    assert len(alphas) == 6 and len(betas) == 5
    nodes, weights = np.linalg.eigh(_krylov._tridiagonal(alphas, betas))
    assert np.allclose(nodes, EIGENVALUES, atol=1e-10)
    # Gauss quadrature: the squared first components are the start vector's weights on the eigenvectors
    _, vectors = np.linalg.eigh(matrix.numpy())
    assert np.allclose(weights[0] ** 2, (vectors.T @ start.numpy()) ** 2, atol=1e-10)


def test_tridiagonal_stops_at_an_invariant_subspace():
    matrix = _matrix()
    _, vectors = np.linalg.eigh(matrix.numpy())
    start = torch.from_numpy(vectors[:, 4].copy())
    alphas, betas = _krylov.lanczos_tridiagonal(lambda v: matrix @ v, start, steps=6)
    assert alphas == pytest.approx([4.0], abs=1e-12) and len(betas) == 0


def test_progress_bar_is_none_when_off():
    assert _krylov.progress_bar(False, 10) is None


def test_orthogonalise_against_several_bases_equals_against_their_concatenation():
    from deepscope.curvature._krylov import orthogonalise

    generator = torch.Generator().manual_seed(0)
    together, _ = torch.linalg.qr(torch.randn(50, 7, dtype=torch.float64, generator=generator))
    w = torch.randn(50, dtype=torch.float64, generator=generator)
    split = orthogonalise(w, together[:, :3], together[:, 3:], together[:, :0])  # an empty basis is skipped
    # classical Gram-Schmidt: the same coefficients, summed in another order (float64, 7 terms)
    torch.testing.assert_close(split, orthogonalise(w, together), atol=1e-14, rtol=1e-12)
    assert float((together.T @ split).abs().max()) < 1e-14


@pytest.mark.parametrize("rademacher", [True, False])
def test_random_unit_vector_drawn_in_place_keeps_its_values(rademacher):
    generator = torch.Generator().manual_seed(11)
    if rademacher:  # the earlier formula: an int64 draw, its float64 copy, then the quotient
        old = torch.randint(0, 2, (1001,), generator=generator).to(torch.float64) * 2 - 1
    else:
        old = torch.randn(1001, generator=generator, dtype=torch.float64)
    old = old / old.norm()
    new = _krylov.random_unit_vector(1001, 11, dtype=torch.float64, rademacher=rademacher)
    assert torch.equal(new, old)  # the same draws and the same float operations: bit for bit
