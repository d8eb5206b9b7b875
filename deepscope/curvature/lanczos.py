"""Extreme Hessian eigenvalues by Lanczos with full reorthogonalisation and residual-based stopping.

Lanczos (1950) builds an orthonormal basis ``Q_m`` of the Krylov space
``span{v, Hv, …, H^{m-1}v}`` in which ``T_m = Q_mᵀ H Q_m`` is tridiagonal. The eigenpairs
``(θ_i, s_i)`` of ``T_m`` give Ritz pairs ``(θ_i, Q_m s_i)`` whose residual is known for free:
``‖H Q_m s_i − θ_i Q_m s_i‖ = β_m |s_{m,i}| = ‖r_i‖`` (Parlett, 1998, §13). We stop when the
eigenvalue error bound of every wanted Ritz value, ``min(‖r_i‖, ‖r_i‖²/gap_i)`` (Kato-Temple, with
the gap to the nearest other Ritz value), is at most ``tol · max(|θ_i|, 10⁻³ max_j |θ_j|)``. Full
reorthogonalisation (classical Gram-Schmidt applied twice) keeps ``Q_m`` orthonormal in floating
point, so no ghost eigenvalues appear. Top-k typically needs ``≈ 2k + 20`` products, where power
iteration with deflation (PyHessian) needs tens per eigenvalue.

Example:
    >>> import torch
    >>> H = torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64))
    >>> values, _, residuals, n, _ = lanczos_eigenpairs(lambda v: H @ v, 50, k=2, tol=1e-8, dtype=torch.float64)
    >>> [round(v, 6) for v in values]
    [50.0, 49.0]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from deepscope._validation import check_choice, check_float, check_int
from deepscope.curvature.hvp import HessianOperator
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["EigenResult", "hessian_eigenvalues", "lanczos_eigenpairs", "lanczos_tridiagonal", "random_unit_vector"]

MatVec = Callable[[torch.Tensor], torch.Tensor]
_WHICH = ("largest", "smallest", "both")


def random_unit_vector(
    n: int, seed: int, *, dtype: torch.dtype, device: Any = None, rademacher: bool = False
) -> torch.Tensor:
    """A reproducible random unit vector (drawn on the CPU, then moved, so every device agrees)."""
    generator = torch.Generator().manual_seed(seed)
    if rademacher:
        vector = torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1
    else:
        vector = torch.randn(n, generator=generator, dtype=torch.float64)
    return (vector / vector.norm()).to(device=device, dtype=dtype)


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove the components of ``w`` along the columns of ``basis`` (twice is enough)."""
    for _ in range(2):
        w = w - basis @ (basis.T @ w)
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


def lanczos_eigenpairs(
    matvec: MatVec,
    n: int,
    *,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-3,
    max_iter: int | None = None,
    seed: int = 0,
    init_vector: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: Any = None,
    return_eigenvectors: bool = False,
    progress: bool = False,
) -> tuple[list[float], torch.Tensor | None, list[float], int, bool]:
    """Lanczos on a symmetric operator of size ``n``.

    Returns ``(eigenvalues, eigenvectors (n, k') or None, residual_norms, n_products, converged)``;
    eigenvalues are the wanted Ritz values, largest first ("both": the k largest, then the k smallest).
    """
    needed = k if which != "both" else min(n, 2 * k)
    max_iter = min(n, max(100, 3 * needed + 20)) if max_iter is None else min(n, max_iter)
    start = random_unit_vector(n, seed, dtype=dtype, device=device) if init_vector is None else init_vector
    start = start.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(start).all()) or float(start.norm()) == 0.0:
        start = random_unit_vector(n, seed, dtype=dtype, device=device)
    basis = torch.empty(n, min(max_iter + 1, 48), dtype=dtype, device=device)  # grows by doubling
    basis[:, 0] = start / start.norm()
    alphas: list[float] = []
    betas: list[float] = []
    eps = torch.finfo(dtype).eps
    restarts = 0
    bar = _progress(progress, max_iter)
    converged = False
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
        w = _orthogonalise(w, basis[:, : step + 1])
        beta = float(w.norm())
        values, vectors_t = np.linalg.eigh(_tridiagonal(alphas, betas))
        scale = max(float(np.abs(values).max()), 1e-30)
        wanted = _wanted(len(values), min(k, len(values)), which)
        residuals = beta * np.abs(vectors_t[-1, wanted])
        thresholds = tol * np.maximum(np.abs(values[wanted]), 1e-3 * scale)
        if bar is not None:
            bar.update(1)
        enough = len(values) >= needed + 1  # one spare Ritz value, so that every wanted one has a gap
        if enough and bool(np.all(_error_bounds(values, wanted, residuals) <= thresholds)):
            converged = True
            break
        if step + 1 == n:  # the Krylov space is the whole space: Ritz pairs are exact
            converged = True
            break
        if beta <= 100 * eps * scale * np.sqrt(n):  # invariant subspace: restart orthogonally
            restarts += 1
            fresh = _orthogonalise(
                random_unit_vector(n, seed + 1000 + restarts, dtype=dtype, device=device), basis[:, : step + 1]
            )
            betas.append(0.0)
            basis = _ensure_columns(basis, step + 2, max_iter + 1)
            basis[:, step + 1] = fresh / fresh.norm()
            continue
        betas.append(beta)
        basis = _ensure_columns(basis, step + 2, max_iter + 1)
        basis[:, step + 1] = w / beta
    if bar is not None:
        bar.close()
    m = len(alphas)
    eigenvalues = [float(v) for v in values[wanted]]
    eigenvectors = None
    if return_eigenvectors:
        eigenvectors = basis[:, :m] @ torch.as_tensor(vectors_t[:, wanted], dtype=dtype, device=basis.device)
    return eigenvalues, eigenvectors, [float(r) for r in residuals], m, converged


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
        w = _orthogonalise(w, basis[:, : step + 1])
        beta = float(w.norm())
        if step + 1 == steps or beta <= 100 * eps * max(abs(a) for a in alphas) * np.sqrt(n):
            break
        betas.append(beta)
        basis[:, step + 1] = w / beta
    return np.asarray(alphas), np.asarray(betas)


def _progress(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Lanczos", unit="HVP", leave=False)


@dataclasses.dataclass(frozen=True)
class EigenResult(Result):
    """Extreme eigenvalues of the Hessian, with residual norms ``‖Hv − λv‖``.

    Order: "largest" descending; "smallest" ascending (most negative first); "both" the k largest
    (descending) followed by the k smallest (ascending).

    ``converged`` is True when every residual met the tolerance; ``n_hvps`` counts
    Hessian-vector products; ``eigenvectors`` (n_params, k) is None unless requested.
    """

    eigenvalues: list[float]
    residual_norms: list[float]
    n_hvps: int
    converged: bool
    which: str
    tol: float
    n_params: int
    n_samples: int
    eigenvectors: torch.Tensor | None = None
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"index": i, "eigenvalue": value, "residual_norm": residual}
            for i, (value, residual) in enumerate(zip(self.eigenvalues, self.residual_norms))
        ]

    def plot(self, ax=None):
        from deepscope.report.svg import new_figure

        figure, ax = new_figure(5.0, 3.2) if ax is None else (ax.figure, ax)
        index = np.arange(len(self.eigenvalues))
        ax.errorbar(index, self.eigenvalues, yerr=self.residual_norms, fmt="o", capsize=3)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("index (largest first)")
        ax.set_ylabel("Hessian eigenvalue")
        ax.set_title(f"Hessian eigenvalues ({self.n_hvps} HVPs)")
        return figure


@analysis(takes="problem", family="curvature", example_kwargs={"k": 2, "max_samples": 8, "max_iter": 10})
def hessian_eigenvalues(
    problem: Any,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-3,
    max_iter: int | None = None,
    seed: int = 0,
    *,
    max_samples: int | None = None,
    parameter_names: Sequence[str] | None = None,
    kind: str = "hessian",
    method: str = "auto",
    return_eigenvectors: bool = False,
    init_vector: torch.Tensor | None = None,
    split: str = "train",
    progress: bool = False,
) -> EigenResult:
    """The ``k`` largest and/or smallest eigenvalues of the loss Hessian, by Lanczos.

    Lanczos with full reorthogonalisation (Lanczos, 1950; Parlett, 1998); stops when every wanted
    eigenvalue's error bound ``min(‖r‖, ‖r‖²/gap)`` from its residual ``r = Hv − λv`` is at most
    ``tol · max(|λ|, 10⁻³ λ_max)``.

    Args:
        problem: a :class:`deepscope.Problem`.
        k: number of eigenvalues per end (``which="both"`` returns 2k).
        which: "largest", "smallest" (algebraic) or "both".
        tol: relative eigenvalue tolerance (on the residual-based error bound).
        max_iter: most products (default ``max(100, 3k + 20)``, at most n_params).
        seed: seed of the random start vector.
        max_samples: samples in the mean loss (default: the whole training split, streamed).
        parameter_names: restrict to a block of parameters (per-layer spectra).
        kind: "hessian" or "gauss_newton".
        method: HVP method ("auto", "double_backward", "forward_over_reverse").
        return_eigenvectors: also return the Ritz vectors (n_params, k).
        init_vector: warm start (e.g. the previous top eigenvector while training).

    Returns:
        An :class:`EigenResult`.

    Example:
        >>> result = hessian_eigenvalues(problem, k=3)  # doctest: +SKIP
        >>> result.eigenvalues[0]                       # doctest: +SKIP
    """
    check_int(k, "k", "hessian_eigenvalues", minimum=1)
    check_choice(which, "which", "hessian_eigenvalues", _WHICH)
    check_float(tol, "tol", "hessian_eigenvalues", minimum=0.0, strict_minimum=True)
    if max_iter is not None:
        check_int(max_iter, "max_iter", "hessian_eigenvalues", minimum=1)
    operator = HessianOperator.from_problem(
        problem,
        split=split,
        max_samples=max_samples,
        parameter_names=parameter_names,
        kind=kind,
        method=method,
        owner="hessian_eigenvalues",
    )
    return eigen_result_from_operator(
        operator,
        k=k,
        which=which,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        return_eigenvectors=return_eigenvectors,
        init_vector=init_vector,
        progress=progress,
    )


def eigen_result_from_operator(
    operator: HessianOperator,
    *,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-3,
    max_iter: int | None = None,
    seed: int = 0,
    return_eigenvectors: bool = False,
    init_vector: torch.Tensor | None = None,
    progress: bool = False,
    owner: str = "hessian_eigenvalues",
) -> EigenResult:
    """Run Lanczos on an existing operator (the Monitor and per-layer spectra use this)."""
    needed = k if which != "both" else 2 * k
    if needed > operator.n_params:
        raise invalid_parameter("k", owner, f"an int <= the number of parameters ({operator.n_params})", k)
    if init_vector is not None and tuple(init_vector.shape) != (operator.n_params,):
        raise invalid_parameter("init_vector", owner, f"a flat tensor of length {operator.n_params}", init_vector)
    values, vectors, residuals, _, converged = lanczos_eigenpairs(
        operator.matvec,
        operator.n_params,
        k=k,
        which=which,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        init_vector=init_vector,
        dtype=operator.dtype,
        device=operator.device,
        return_eigenvectors=return_eigenvectors,
        progress=progress,
    )
    from deepscope.guard import current_guard_report

    report = current_guard_report(operator.model)
    return EigenResult(
        eigenvalues=values,
        residual_norms=residuals,
        n_hvps=operator.n_products,
        converged=converged,
        which=which,
        tol=tol,
        n_params=operator.n_params,
        n_samples=operator.n_samples,
        eigenvectors=vectors,
        note=getattr(report, "note", "") if report is not None else "",
    )
