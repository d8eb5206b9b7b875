"""Mean-field maps of wide random networks by Gauss-Hermite quadrature (Poole et al. 2016; Schoenholz et al. 2017).

A layer ``h = W phi(h_prev) + b`` with ``W_ij ~ N(0, sigma_w^2 / n)``, ``b_i ~ N(0, sigma_b^2)`` maps
the pre-activation variance ``q`` and the correlation ``c`` of two inputs as

    q' = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2
    q12' = sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2,  u1 = sqrt(q1) z1, u2 = sqrt(q2) (c z1 + sqrt(1-c^2) z2)
    chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]

with ``z, z1, z2`` independent standard normals. Activations are torch callables on float64 tensors;
derivatives come from autograd, so any user callable works.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import roots_laguerre

__all__ = ["gaussian_nodes", "length_map", "fixed_point", "chi_1", "correlation_map", "correlation_slope", "derivative"]

Activation = Callable[[torch.Tensor], torch.Tensor]


@functools.lru_cache(maxsize=4)
def gaussian_nodes(points: int = 24_000, limit: float = 12.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``z`` and weights ``w`` with ``sum w f(z) ~ E[f(Z)]``, ``Z ~ N(0, 1)``.

    A fine trapezoid grid (step 1e-3) shifted by half a step so that no node sits on 0, where
    ReLU-like derivatives jump (so ``E[1{Z > 0}] = 1/2`` exactly). Unlike a Gauss-Hermite rule it
    resolves integrands as narrow as ``phi'(sqrt(q) z)`` for a saturating ``phi`` and large ``q``.
    """
    step = 2 * limit / points
    nodes = -limit + step * (np.arange(points) + 0.5)
    weights = np.exp(-0.5 * nodes**2)
    return torch.from_numpy(nodes), torch.from_numpy(weights / weights.sum())


def derivative(activation: Activation, x: torch.Tensor) -> torch.Tensor:
    """``phi'(x)`` elementwise by autograd (float64)."""
    x = x.detach().to(torch.float64).requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(activation(x).sum(), x)
    return gradient.detach()


def length_map(activation: Activation, q: float, sigma_w: float, sigma_b: float) -> float:
    """One step of the variance map ``q -> sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2``."""
    z, w = gaussian_nodes()
    return float(sigma_w**2 * (w * activation(math.sqrt(max(q, 0.0)) * z) ** 2).sum() + sigma_b**2)


def fixed_point(activation: Activation, sigma_w: float, sigma_b: float, low: float = 1e-12, high: float = 1e8) -> float:
    """The stable fixed point ``q*`` of the length map: 0 when the variance collapses, ``inf`` when it diverges.

    Solved as a root of ``L(q) - q`` on ``[low, high]`` (Brent), so that slow algebraic convergence
    near criticality (tanh at ``sigma_w = 1``) does not bias it, as plain iteration would.
    """

    def excess(q: float) -> float:
        return length_map(activation, q, sigma_w, sigma_b) - q

    at_low, at_high = excess(low), excess(high)
    if at_high > 0:
        return math.inf
    if at_low <= 0:
        return 0.0
    root, info = brentq(excess, low, high, xtol=1e-14, rtol=1e-10, maxiter=500, full_output=True, disp=False)
    return float(root)


def chi_1(activation: Activation, q: float, sigma_w: float) -> float:
    """``chi_1 = sigma_w^2 E[phi'(sqrt(q) z)^2]``: the mean squared singular value of a layer's Jacobian."""
    z, w = gaussian_nodes()
    return float(sigma_w**2 * (w * derivative(activation, math.sqrt(max(q, 0.0)) * z) ** 2).sum())


@functools.lru_cache(maxsize=4)
def _pair_nodes(angles: int = 720, radii: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-D standard normal rule in polar form: trapezoid in the angle, Gauss-Laguerre in ``r^2 / 2``.

    Exact in the radius for positively homogeneous integrands (ReLU), and accurate across the kinks
    along lines through the origin, where a tensor Gauss-Hermite grid is not.
    """
    s, v = roots_laguerre(radii)
    theta = (np.arange(angles) + 0.5) * (2 * math.pi / angles)
    r = np.sqrt(2 * s)
    z1 = np.outer(r, np.cos(theta))
    z2 = np.outer(r, np.sin(theta))
    weights = np.outer(v, np.full(angles, 1.0 / angles))
    return torch.from_numpy(z1), torch.from_numpy(z2), torch.from_numpy(weights)


def _pair_grid(q1: float, q2: float, c: float):
    z1, z2, weights = _pair_nodes()
    c = min(max(c, -1.0), 1.0)
    u1 = math.sqrt(max(q1, 0.0)) * z1
    u2 = math.sqrt(max(q2, 0.0)) * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2)
    return u1, u2, weights


def correlation_map(activation: Activation, q1: float, q2: float, c: float, sigma_w: float, sigma_b: float):
    """One step of the pair map: returns ``(q1', q2', c')``."""
    u1, u2, weights = _pair_grid(q1, q2, c)
    new_q1 = length_map(activation, q1, sigma_w, sigma_b)
    new_q2 = length_map(activation, q2, sigma_w, sigma_b)
    q12 = float(sigma_w**2 * (weights * activation(u1) * activation(u2)).sum() + sigma_b**2)
    return new_q1, new_q2, q12 / math.sqrt(new_q1 * new_q2) if new_q1 > 0 and new_q2 > 0 else 1.0


def correlation_slope(activation: Activation, q: float, c: float, sigma_w: float) -> float:
    """``chi_c = sigma_w^2 E[phi'(u1) phi'(u2)]`` at variance ``q`` and correlation ``c`` (= chi_1 at c = 1)."""
    u1, u2, weights = _pair_grid(q, q, c)
    return float(sigma_w**2 * (weights * derivative(activation, u1) * derivative(activation, u2)).sum())
