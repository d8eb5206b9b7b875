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

One Krylov space holds a single direction of each eigenspace, so an eigenvalue of multiplicity
two would appear once. For ``k >= 2`` the converged Ritz vectors are locked and Lanczos restarts
from a random vector orthogonal to them, until the restarted run finds no eigenvalue that belongs
among the wanted ones (a deflation check; it costs one more run, usually shorter than the first).

Example:
    >>> import torch
    >>> H = torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64))
    >>> values, _, residuals, n, _ = lanczos_eigenpairs(lambda v: H @ v, 50, k=2, tol=1e-8, dtype=torch.float64)
    >>> [round(v, 6) for v in values]
    [50.0, 49.0]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deepscope._validation import check_choice, check_float, check_int
from deepscope.curvature._base import result_note
from deepscope.curvature._krylov import (
    MatVec,
    lanczos_run,
    lanczos_tridiagonal,
    orthogonalise,
    progress_bar,
    random_unit_vector,
)
from deepscope.curvature.hvp import HessianOperator
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["EigenResult", "hessian_eigenvalues", "lanczos_eigenpairs", "lanczos_tridiagonal", "random_unit_vector"]

_WHICH = ("largest", "smallest", "both")


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
    """Lanczos on a symmetric operator of size ``n``, with deflated restarts to find repeated eigenvalues.

    A single Krylov space holds only one direction of each eigenspace, so a repeated eigenvalue
    appears once. For ``k >= 2`` the converged Ritz vectors are therefore locked and Lanczos is
    restarted from a fresh random vector in their orthogonal complement (locking, Parlett, 1998,
    §13.9; Saad, 2011, §4.2): while the complement's extreme eigenvalue still belongs among the
    ``k`` wanted ones (a missed copy), it is added and locked, and the check repeats.

    ``max_iter`` bounds the products of every run (default ``max(100, 3k + 20)``, at most ``n``).
    Returns ``(eigenvalues, eigenvectors (n, k') or None, residual_norms, n_products, converged)``;
    eigenvalues are the wanted Ritz values, largest first ("both": the k largest, then the k smallest).
    ``converged`` is False when a run, the first or a check, ran out of products.
    """
    needed = k if which != "both" else min(n, 2 * k)
    max_iter = min(n, max(100, 3 * needed + 20)) if max_iter is None else min(n, max_iter)
    start = random_unit_vector(n, seed, dtype=dtype, device=device) if init_vector is None else init_vector
    start = start.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(start).all()) or float(start.norm()) == 0.0:
        start = random_unit_vector(n, seed, dtype=dtype, device=device)
    bar = progress_bar(progress, max_iter)
    locked = torch.empty(n, 0, dtype=dtype, device=device)
    run = lanczos_run(matvec, n, start, k=k, which=which, tol=tol, max_iter=max_iter, seed=seed, locked=locked, bar=bar)
    products, converged = len(run.values), run.converged
    count = len(run.wanted)
    high = min(k, count) if which != "smallest" else 0  # the first ``high`` wanted pairs are the largest
    vectors = run.ritz_vectors(list(range(count)))  # the pairs' vectors are its columns: held once
    pairs = [(float(run.values[run.wanted[i]]), float(run.residuals[i]), vectors[:, i]) for i in range(count)]
    tops, bottoms = pairs[:high], pairs[high:]
    locked = vectors if pairs else locked
    checks = 0
    exact = run.exhausted  # the first run spanned the whole space: its Ritz values are the eigenvalues
    while converged and k >= 2 and not exact and locked.shape[1] < n:
        checks += 1
        scale = max(abs(value) for value, _, _ in pairs)
        top = tops[-1][0] if len(tops) >= k else None  # the k-th largest found so far
        bottom = bottoms[-1][0] if len(bottoms) >= k else None
        if top is None and bottom is None:
            break
        margin = max(tol * max(abs(top if top is not None else bottom), 1e-3 * scale), 0.0)

        fresh = orthogonalise(random_unit_vector(n, seed + 7919 * checks, dtype=dtype, device=device), locked)
        del run  # its basis (max_iter x n numbers) is not held while the next run builds its own
        run = lanczos_run(
            matvec,
            n,
            fresh / fresh.norm(),
            k=1,
            which=which,
            tol=tol,
            max_iter=max_iter,
            seed=seed + 7919 * checks,
            locked=locked,
            bar=bar,
        )
        products += len(run.values)
        converged = run.converged
        found = []
        for i, value in enumerate(float(run.values[j]) for j in run.wanted):
            is_top = which != "smallest" and i == 0
            if (is_top and top is not None and value > top + margin) or (
                not is_top and bottom is not None and value < bottom - margin
            ):
                found.append((value, float(run.residuals[i]), run.ritz_vectors([i])[:, 0], is_top))
        if not found:
            break
        for value, residual, vector, is_top in found:
            if is_top:
                tops = sorted([*tops, (value, residual, vector)], key=lambda pair: -pair[0])[:k]
            else:
                bottoms = sorted([*bottoms, (value, residual, vector)], key=lambda pair: pair[0])[:k]
            locked = torch.cat([locked, vector[:, None]], dim=1)
        pairs = tops + bottoms
    if bar is not None:
        bar.close()
    chosen = tops + bottoms
    eigenvectors = torch.stack([vector for _, _, vector in chosen], dim=1) if return_eigenvectors else None
    return [value for value, _, _ in chosen], eigenvectors, [r for _, r, _ in chosen], products, converged


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
        from deepscope._figures import new_figure

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
    problem: Problem,
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
    ``tol · max(|λ|, 10⁻³ λ_max)``. Repeated eigenvalues are returned as often as they occur
    (restarts with the found eigenvectors locked; see :func:`lanczos_eigenpairs`).

    Args:
        problem: a :class:`deepscope.Problem`.
        k: number of eigenvalues per end (``which="both"`` returns 2k).
        which: "largest", "smallest" (algebraic) or "both".
        tol: relative eigenvalue tolerance (on the residual-based error bound).
        max_iter: most products per Lanczos run (default ``max(100, 3k + 20)``, at most
            n_params); for ``k >= 2`` the deflation checks that find repeated eigenvalues are
            further runs with the same limit (``n_hvps`` counts all of them).
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


def _gradient_start(operator: HessianOperator, seed: int) -> torch.Tensor | None:
    """g/‖g‖ + r for a random unit r, when the loss gradient g is at hand for free, else None.

    The top Hessian eigenvectors of a trained network lie close to the span of the gradient
    (Gur-Ari et al. 2018, "Gradient descent happens in a tiny subspace"), so a start with a
    gradient component converges in fewer products (on the digits CNN of bench/, 4 instead of
    5 to 7 at tol 1e-3); the random half keeps every eigenvector's overlap with the start nonzero
    whatever g is. The gradient is free when the operator holds one batch's gradient graph (the
    double-backward products reuse it); otherwise the random start is kept.
    """
    if operator.kind != "hessian" or operator.method != "double_backward" or operator._single_batch is None:
        return None
    if operator._cached is None:
        operator._cached = [(1.0, *operator._gradient_graph(*operator._single_batch))]
    gradient = operator.space.flatten([g.detach() for g in operator._cached[0][2]]).to(torch.float64)
    start = random_unit_vector(operator.n_params, seed, dtype=torch.float64)
    norm = float(gradient.norm())
    if math.isfinite(norm) and norm > 0:
        start = start + gradient / norm
    return start.to(device=operator.device, dtype=operator.dtype)


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
    if init_vector is not None and (
        not isinstance(init_vector, torch.Tensor) or tuple(init_vector.shape) != (operator.n_params,)
    ):
        raise invalid_parameter("init_vector", owner, f"a flat tensor of length {operator.n_params}", init_vector)
    if init_vector is None and which == "largest":
        init_vector = _gradient_start(operator, seed)
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
        note=result_note(operator.model, operator.fused_attention),
    )
