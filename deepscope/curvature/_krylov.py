"""Lanczos building blocks: random start vectors, one (locked) Lanczos run, error bounds, quadrature steps.

Shared by :mod:`deepscope.curvature.lanczos` (extreme eigenvalues, with deflated restarts) and
:mod:`deepscope.curvature.density` (stochastic Lanczos quadrature).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from deepscope.errors import invalid_parameter

__all__ = ["LanczosRun", "lanczos_run", "lanczos_tridiagonal", "orthogonalise", "progress_bar", "random_unit_vector"]

MatVec = Callable[[torch.Tensor], torch.Tensor]


def random_unit_vector(
    n: int, seed: int, *, dtype: torch.dtype, device: Any = None, rademacher: bool = False
) -> torch.Tensor:
    """A reproducible random unit vector (drawn on the CPU, then moved, so every device agrees).

    Drawn and normalised in place in float64 (one vector of ``n`` numbers, not the three an int64
    draw, its float64 copy and the quotient took: 0.7 GB for 29M parameters).
    """
    generator = torch.Generator().manual_seed(seed)
    if rademacher:
        vector = torch.randint(0, 2, (n,), generator=generator, dtype=torch.float64).mul_(2).sub_(1)
    else:
        vector = torch.randn(n, generator=generator, dtype=torch.float64)
    return vector.div_(vector.norm()).to(device=device, dtype=dtype)


def orthogonalise(w: torch.Tensor, *bases: torch.Tensor) -> torch.Tensor:
    """Remove the components of ``w`` along the columns of ``bases`` (twice is enough).

    Classical Gram-Schmidt against the columns of all ``bases`` together (the coefficients of each
    pass come from the same ``w``), without concatenating them: a copy of a Lanczos basis of a
    29M-parameter model is 1.4 GB in float64.
    """
    bases = tuple(basis for basis in bases if basis.shape[1])
    for _ in range(2):
        coefficients = [basis.T @ w for basis in bases]
        for basis, coefficient in zip(bases, coefficients):
            w = w - basis @ coefficient
    return w


def _tridiagonal(alphas: Sequence[float], betas: Sequence[float]) -> np.ndarray:
    m = len(alphas)
    matrix = np.diag(np.asarray(alphas, dtype=np.float64))
    if m > 1:
        off = np.asarray(betas[: m - 1], dtype=np.float64)
        matrix += np.diag(off, 1) + np.diag(off, -1)
    return matrix


def _wanted(order_count: int, k: int, which: str) -> np.ndarray:
    """Indices (into ascending Ritz values) of the wanted pairs: largest first, then smallest."""
    if which == "largest":
        return np.arange(order_count - 1, order_count - 1 - k, -1)
    if which == "smallest":
        return np.arange(k)
    largest = list(range(order_count - 1, order_count - 1 - k, -1))
    return np.array(largest + [i for i in range(k) if i not in largest])


@dataclasses.dataclass
class LanczosRun:
    """One Lanczos run: ascending Ritz values, their eigenvectors in the basis, the wanted indices."""

    values: np.ndarray
    vectors_t: np.ndarray
    wanted: np.ndarray
    residuals: np.ndarray
    basis: torch.Tensor
    converged: bool
    exhausted: bool  # the Krylov space and the locked vectors span the whole space: the run is exact

    def ritz_vectors(self, positions: Sequence[int]) -> torch.Tensor:
        """Ritz vectors (n, len(positions)) of the wanted pairs at ``positions``."""
        columns = self.vectors_t[:, self.wanted[list(positions)]]
        return self.basis @ torch.as_tensor(columns, dtype=self.basis.dtype, device=self.basis.device)


def lanczos_run(
    matvec: MatVec,
    n: int,
    start: torch.Tensor,
    *,
    k: int,
    which: str,
    tol: float,
    max_iter: int,
    seed: int,
    locked: torch.Tensor,
    bar: Any,
) -> LanczosRun:
    """Lanczos from ``start`` in the orthogonal complement of the ``locked`` columns (n, p).

    Every new basis vector is orthogonalised against the locked vectors as well, so the Ritz values
    are those of ``H`` restricted to the complement. (A check that stopped as soon as the Ritz
    values lie clearly below the wanted ones is unsafe: early Ritz values can sit far below the
    top eigenvalue with a small residual, so every run converges as the first one does.)
    """
    dtype, device = start.dtype, start.device
    if locked.shape[1]:  # start in the complement too (callers need not do it themselves)
        start = orthogonalise(start, locked)
    free = n - locked.shape[1]  # dimension of the complement
    needed = k if which != "both" else min(free, 2 * k)
    max_iter = min(free, max_iter)
    basis = torch.empty(n, min(max_iter + 1, 48), dtype=dtype, device=device)  # grows by doubling
    basis[:, 0] = start / start.norm()
    alphas: list[float] = []
    betas: list[float] = []
    eps = torch.finfo(dtype).eps
    restarts = 0
    converged = exhausted = False
    values = vectors_t = residuals = wanted = None
    for step in range(max_iter):
        q = basis[:, step]
        w = matvec(q).to(dtype)
        if not bool(torch.isfinite(w).all()):
            raise invalid_parameter(
                "problem", "hessian_eigenvalues", "a loss with finite curvature", "non-finite Hessian-vector product"
            )
        alpha = float(q @ w)
        alphas.append(alpha)
        w = orthogonalise(w, locked, basis[:, : step + 1])
        beta = float(w.norm())
        values, vectors_t = np.linalg.eigh(_tridiagonal(alphas, betas))
        scale = max(float(np.abs(values).max()), 1e-30)
        wanted = _wanted(len(values), min(k, len(values)), which)
        residuals = beta * np.abs(vectors_t[-1, wanted])
        thresholds = tol * np.maximum(np.abs(values[wanted]), 1e-3 * scale)
        if bar is not None:
            bar.update(1)
        bounds = _error_bounds(values, wanted, residuals)
        enough = len(values) >= needed + 1  # one spare Ritz value, so that every wanted one has a gap
        if enough and bool(np.all(bounds <= thresholds)):
            converged = True
            break
        if step + 1 == free:  # the Krylov space is the whole complement: Ritz pairs are exact
            converged = exhausted = True
            break
        if beta <= 100 * eps * scale * np.sqrt(n):  # invariant subspace: restart orthogonally
            restarts += 1
            fresh = orthogonalise(
                random_unit_vector(n, seed + 1000 + restarts, dtype=dtype, device=device),
                locked,
                basis[:, : step + 1],
            )
            betas.append(0.0)
            basis = _ensure_columns(basis, step + 2, max_iter + 1)
            basis[:, step + 1] = fresh / fresh.norm()
            continue
        betas.append(beta)
        basis = _ensure_columns(basis, step + 2, max_iter + 1)
        basis[:, step + 1] = w / beta
    return LanczosRun(values, vectors_t, wanted, residuals, basis[:, : len(alphas)], converged, exhausted)


def _error_bounds(values: np.ndarray, wanted: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Eigenvalue error bounds ``min(‖r‖, ‖r‖²/gap)`` (Kato, 1949; Temple, 1929; Parlett, 1998, §11.7).

    ``gap`` is the distance from the Ritz value to the nearest other Ritz value, the usual estimate
    of the distance to the rest of the spectrum.
    """
    bounds = residuals.copy()
    for position, index in enumerate(wanted):
        others = np.delete(values, index)
        if others.size:
            gap = float(np.min(np.abs(others - values[index])))
            if gap > 0:
                bounds[position] = min(residuals[position], residuals[position] ** 2 / gap)
    return bounds


def _ensure_columns(basis: torch.Tensor, needed: int, most: int) -> torch.Tensor:
    if basis.shape[1] >= needed:
        return basis
    grown = torch.empty(basis.shape[0], min(most, 2 * basis.shape[1]), dtype=basis.dtype, device=basis.device)
    grown[:, : basis.shape[1]] = basis
    return grown


def lanczos_tridiagonal(matvec: MatVec, start: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` Lanczos steps from ``start`` (full reorthogonalisation); returns ``(alphas, betas)``.

    Stops early on an invariant subspace (then the quadrature is exact). Used by stochastic
    Lanczos quadrature (:mod:`deepscope.curvature.density`).
    """
    n = start.shape[0]
    steps = min(steps, n)
    basis = torch.empty(n, steps, dtype=start.dtype, device=start.device)
    basis[:, 0] = start / start.norm()
    alphas, betas = [], []
    eps = torch.finfo(start.dtype).eps
    for step in range(steps):
        q = basis[:, step]
        w = matvec(q).to(start.dtype)
        alphas.append(float(q @ w))
        w = orthogonalise(w, basis[:, : step + 1])
        beta = float(w.norm())
        if step + 1 == steps or beta <= 100 * eps * max(abs(a) for a in alphas) * np.sqrt(n):
            break
        betas.append(beta)
        basis[:, step + 1] = w / beta
    return np.asarray(alphas), np.asarray(betas)


def progress_bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Lanczos", unit="HVP", leave=False)
