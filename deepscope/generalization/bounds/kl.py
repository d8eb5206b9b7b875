"""Binary kl divergence and its inversions, the last step of every PAC-Bayes-kl bound.

``kl(q || p) = q log(q/p) + (1 − q) log((1 − q)/(1 − p))`` between two Bernoulli distributions.
Its upper inversion ``kl⁻¹(q, c) = max{p ∈ [q, 1] : kl(q || p) ≤ c}`` turns the Seeger/Maurer bound
``kl(L̂ || L) ≤ c`` into ``L ≤ kl⁻¹(L̂, c)`` (Seeger 2002; Maurer 2004; Langford 2005). The lower
inversion is ``min{p ∈ [0, q] : kl(q || p) ≤ c}``. Both are found by bisection to 1e-12 (kl is
monotone in p on each side of q), which is what the PAC-Bayes literature does (Pérez-Ortiz et al. 2021).

Example:
    >>> round(kl_inverse_upper(0.1, 0.05), 4)
    0.2201
"""

from __future__ import annotations

import math

from deepscope._validation import check_float

__all__ = ["binary_kl", "kl_inverse_upper", "kl_inverse_lower"]

_TOLERANCE = 1e-12


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0.0 else x * math.log(y)


def binary_kl(q: float, p: float) -> float:
    """kl(q || p) between Bernoulli(q) and Bernoulli(p), in nats (+inf where p is 0 or 1 and q is not).

    Args:
        q: the empirical (first) probability, in [0, 1].
        p: the true (second) probability, in [0, 1].

    Example:
        >>> binary_kl(0.5, 0.5)
        0.0
    """
    q = check_float(q, "q", "binary_kl", minimum=0.0, maximum=1.0)
    p = check_float(p, "p", "binary_kl", minimum=0.0, maximum=1.0)
    if (p == 0.0 and q > 0.0) or (p == 1.0 and q < 1.0):
        return math.inf
    value = _xlogy(q, q) - _xlogy(q, p) + _xlogy(1.0 - q, 1.0 - q) - _xlogy(1.0 - q, 1.0 - p)
    return max(value, 0.0)


def _bisect(q: float, c: float, inside: float, outside: float) -> float:
    """Boundary of {p : kl(q||p) <= c} between ``inside`` (feasible) and ``outside`` (infeasible)."""
    while abs(outside - inside) > _TOLERANCE:
        middle = 0.5 * (inside + outside)
        if binary_kl(q, middle) <= c:
            inside = middle
        else:
            outside = middle
    return inside


def kl_inverse_upper(q: float, c: float) -> float:
    """``max{p ∈ [q, 1] : kl(q || p) ≤ c}`` by bisection (to 1e-12).

    If ``L̂`` is an empirical risk and ``kl(L̂ || L) ≤ c`` holds with probability 1 − δ, then
    ``L ≤ kl_inverse_upper(L̂, c)`` with the same probability (Seeger 2002; Langford 2005).

    Args:
        q: empirical risk in [0, 1].
        c: the right-hand side, >= 0 (e.g. ``(KL + log(2√n/δ)) / n``).

    Returns:
        The upper inversion, in [q, 1]. It is never below ``q`` and never below the
        Pinsker-free bound's point where ``kl`` reaches ``c``.

    Example:
        >>> kl_inverse_upper(0.0, math.log(2.0)) == 0.5
        True
    """
    q = check_float(q, "q", "kl_inverse_upper", minimum=0.0, maximum=1.0)
    c = check_float(c, "c", "kl_inverse_upper", minimum=0.0)
    if q == 1.0 or binary_kl(q, 1.0) <= c:
        return 1.0
    if q == 0.0:
        return -math.expm1(-c)  # kl(0 || p) = −log(1 − p) has a closed-form inverse
    return _bisect(q, c, q, 1.0)


def kl_inverse_lower(q: float, c: float) -> float:
    """``min{p ∈ [0, q] : kl(q || p) ≤ c}`` by bisection (to 1e-12): the lower confidence limit.

    Example:
        >>> kl_inverse_lower(1.0, math.log(2.0)) == 0.5
        True
    """
    q = check_float(q, "q", "kl_inverse_lower", minimum=0.0, maximum=1.0)
    c = check_float(c, "c", "kl_inverse_lower", minimum=0.0)
    if q == 0.0 or binary_kl(q, 0.0) <= c:
        return 0.0
    if q == 1.0:
        return math.exp(-c)  # kl(1 || p) = −log p
    return _bisect(q, c, q, 0.0)
