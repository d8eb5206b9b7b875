"""Hessian eigenvalue density by stochastic Lanczos quadrature (SLQ) with Gaussian smoothing.

For a unit probe ``v``, ``m`` Lanczos steps give a tridiagonal ``T_m = S Θ Sᵀ``; the nodes
``θ_j`` and weights ``w_j = S_{1j}²`` form the ``m``-point Gauss quadrature of the spectral
measure of ``H`` seen from ``v`` (Golub & Meurant, 2010): ``vᵀ f(H) v ≈ Σ_j w_j f(θ_j)``, exact for
polynomials of degree ``≤ 2m − 1``. Averaging over random probes estimates
``(1/n) tr f(H)``; with ``f`` a Gaussian kernel of width ``σ`` this is the smoothed spectral
density ``φ_σ(t) = (1/n) Σ_i N(t; λ_i, σ²)`` (Lin, Saad & Yang, 2016; Ghorbani, Krishnan & Xiao,
2019). The density integrates to 1 and its mean is ``tr(H)/n``.

Example:
    >>> result = hessian_density(problem, n_vectors=4, n_steps=40)  # doctest: +SKIP
    >>> fig = result.plot()                                          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deepscope._validation import check_float, check_int
from deepscope.curvature._base import result_note
from deepscope.curvature.hvp import HessianOperator
from deepscope.curvature.lanczos import lanczos_tridiagonal, random_unit_vector
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["DensityResult", "hessian_density", "quadrature_nodes"]


@dataclasses.dataclass(frozen=True)
class DensityResult(Result):
    """The smoothed eigenvalue density on a grid, the quadrature nodes/weights per probe, and cost.

    ``mean_eigenvalue`` is the density's mean (``≈ tr(H)/n``) with its standard error across probes.
    """

    grid: list[float]
    density: list[float]
    nodes: list[list[float]]
    weights: list[list[float]]
    sigma: float
    n_vectors: int
    n_steps: int
    n_hvps: int
    n_params: int
    mean_eigenvalue: float
    mean_standard_error: float
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        nodes = np.concatenate([np.asarray(n) for n in self.nodes])
        return [
            {
                "n_vectors": self.n_vectors,
                "n_steps": self.n_steps,
                "n_hvps": self.n_hvps,
                "sigma": self.sigma,
                "lowest_node": float(nodes.min()),
                "highest_node": float(nodes.max()),
                "mean_eigenvalue": self.mean_eigenvalue,
                "mean_standard_error": self.mean_standard_error,
                "trace_estimate": self.mean_eigenvalue * self.n_params,
            }
        ]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(5.5, 3.2) if ax is None else (ax.figure, ax)
        density = np.maximum(np.asarray(self.density), 1e-12)
        ax.semilogy(self.grid, density, color="C0")
        ax.set_ylim(bottom=max(1e-8, density.max() * 1e-9))
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density (log scale)")
        ax.set_title(f"Hessian spectral density (SLQ, {self.n_vectors} probes × {self.n_steps} steps)")
        return figure


def quadrature_nodes(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights of a Lanczos tridiagonal (eigenvalues, squared first components)."""
    matrix = np.diag(alphas)
    if len(betas):
        matrix += np.diag(betas, 1) + np.diag(betas, -1)
    nodes, vectors = np.linalg.eigh(matrix)
    return nodes, vectors[0] ** 2


def _smoothed(grid: np.ndarray, nodes: Sequence[np.ndarray], weights: Sequence[np.ndarray], sigma: float) -> np.ndarray:
    density = np.zeros_like(grid)
    for node, weight in zip(nodes, weights):
        density += (weight[None, :] * np.exp(-((grid[:, None] - node[None, :]) ** 2) / (2 * sigma**2))).sum(1)
    return density / (len(nodes) * sigma * math.sqrt(2 * math.pi))


@analysis(takes="problem", family="curvature", example_kwargs={"n_vectors": 1, "n_steps": 5, "max_samples": 8})
def hessian_density(
    problem: Problem,
    n_vectors: int = 4,
    n_steps: int = 60,
    sigma: float | None = None,
    grid_size: int = 2000,
    seed: int = 0,
    *,
    max_samples: int | None = None,
    parameter_names: Sequence[str] | None = None,
    kind: str = "hessian",
    split: str = "train",
    progress: bool = False,
) -> DensityResult:
    """The smoothed eigenvalue density of the loss Hessian by stochastic Lanczos quadrature.

    ``φ_σ(t) ≈ (1/n_vectors) Σ_v Σ_j w_vj N(t; θ_vj, σ²)`` (Lin, Saad & Yang, 2016; Ghorbani et al., 2019).

    Args:
        problem: a :class:`deepscope.Problem`.
        n_vectors: number of random probes (costs ``n_vectors × n_steps`` products).
        n_steps: Lanczos steps per probe (quadrature exact for polynomials of degree ``2·n_steps − 1``).
        sigma: Gaussian smoothing width (default: 1/200 of the spectral range).
        grid_size: points of the density grid.
        seed: seed of the probes.
        max_samples, parameter_names, kind, split: as in :func:`~deepscope.curvature.hessian_eigenvalues`.

    Returns:
        A :class:`DensityResult`; ``plot()`` draws the density on a log scale.

    Example:
        >>> hessian_density(problem).mean_eigenvalue  # doctest: +SKIP
    """
    check_int(n_vectors, "n_vectors", "hessian_density", minimum=1)
    check_int(n_steps, "n_steps", "hessian_density", minimum=1)
    check_int(grid_size, "grid_size", "hessian_density", minimum=10)
    if sigma is not None:
        check_float(sigma, "sigma", "hessian_density", minimum=0.0, strict_minimum=True)
    operator = HessianOperator.from_problem(
        problem,
        split=split,
        max_samples=max_samples,
        parameter_names=parameter_names,
        kind=kind,
        owner="hessian_density",
    )
    nodes, weights = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_vectors, desc="SLQ", unit="probe", leave=False)
    for index in range(n_vectors):
        start = random_unit_vector(
            operator.n_params, seed + index, dtype=operator.dtype, device=operator.device, rademacher=True
        )
        node, weight = quadrature_nodes(*lanczos_tridiagonal(operator.matvec, start, n_steps))
        nodes.append(node)
        weights.append(weight)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    low = min(float(n.min()) for n in nodes)
    high = max(float(n.max()) for n in nodes)
    spread = max(high - low, 1e-12 * max(abs(low), abs(high), 1.0))
    sigma = spread / 200 if sigma is None else sigma
    pad = 5 * sigma + 0.01 * spread
    grid = np.linspace(low - pad, high + pad, grid_size)
    density = _smoothed(grid, nodes, weights, sigma)
    means = np.array([float((w * n).sum()) for n, w in zip(nodes, weights)])  # = vᵀHv per probe
    error = float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else math.inf
    return DensityResult(
        grid=grid.tolist(),
        density=density.tolist(),
        nodes=[n.tolist() for n in nodes],
        weights=[w.tolist() for w in weights],
        sigma=sigma,
        n_vectors=n_vectors,
        n_steps=max(len(n) for n in nodes),
        n_hvps=operator.n_products,
        n_params=operator.n_params,
        mean_eigenvalue=float(means.mean()),
        mean_standard_error=error,
        note=result_note(operator.model, operator.fused_attention),
    )
