"""The test-set bound: binomial tail inversion (Langford 2005).

With ``k`` errors on ``n`` held-out examples drawn i.i.d. and independent of the model, the true
error ``p`` satisfies, with probability at least ``1 − δ``,

    p ≤ max{p : BinomCDF(k; n, p) ≥ δ}                                   (Langford 2005, Thm 3.3)

which is exactly the one-sided Clopper–Pearson limit ``Beta⁻¹(1 − δ; k + 1, n − k)``, computed
here with ``scipy.special.betaincinv`` (and 1 when ``k = n``). The looser Chernoff/kl form
``kl⁻¹(k/n, log(1/δ)/n)`` is returned alongside for comparison.

Example:
    >>> result = test_set_bound(errors=5, n=1000, delta=0.05)
    >>> round(result.bound, 4)
    0.0105
"""

from __future__ import annotations

import dataclasses
import math

from scipy import special

from deepscope._validation import check_int, check_probability
from deepscope.errors import DataError, invalid_parameter
from deepscope.generalization.bounds.kl import kl_inverse_upper
from deepscope.results import Result

__all__ = ["TestSetBound", "test_set_bound"]


@dataclasses.dataclass(frozen=True)
class TestSetBound(Result):
    """A high-probability upper bound on the true error from a held-out error count.

    Attributes:
        errors: misclassified held-out examples ``k``.
        n: held-out examples.
        delta: the bound fails with probability at most ``delta``.
        empirical_error: ``k / n``.
        bound: the binomial tail inversion (exact, Langford 2005).
        kl_bound: the Chernoff relaxation ``kl⁻¹(k/n, log(1/δ)/n)`` (never tighter).
    """

    __test__ = False  # not a pytest test class despite the name

    errors: int
    n: int
    delta: float
    empirical_error: float
    bound: float
    kl_bound: float

    def summary(self) -> str:
        """One plain sentence."""
        return (
            f"With probability {1 - self.delta:.0%}, the true error is at most {self.bound:.4f} "
            f"({self.errors} errors in {self.n} held-out examples)."
        )


def binomial_tail_inversion(errors: int, n: int, delta: float) -> float:
    """``max{p : BinomCDF(errors; n, p) ≥ δ}`` (the one-sided Clopper–Pearson upper limit)."""
    if errors >= n:
        return 1.0
    return float(special.betaincinv(errors + 1, n - errors, 1.0 - delta))


def test_set_bound(errors: int, n: int, delta: float = 0.05) -> TestSetBound:
    """Upper-bound the true error of a fixed classifier from its errors on ``n`` held-out examples.

    Args:
        errors: number of misclassified held-out examples (int, 0 <= errors <= n).
        n: number of held-out examples (int >= 1); the examples must not have been used to
            choose the model.
        delta: failure probability, in (0, 1).

    Returns:
        :class:`TestSetBound` with the exact binomial bound and its kl relaxation.

    Example:
        >>> test_set_bound(0, 100, 0.05).bound < 0.03
        True
    """
    if isinstance(n, int) and not isinstance(n, bool) and n == 0:
        raise DataError("The test set is empty (n = 0): a test-set bound needs at least one held-out example.")
    n = check_int(n, "n", "test_set_bound", minimum=1)
    errors = check_int(errors, "errors", "test_set_bound", minimum=0)
    if errors > n:
        raise invalid_parameter("errors", "test_set_bound", f"an int in [0, n={n}]", errors)
    delta = check_probability(delta, "delta", "test_set_bound")
    return TestSetBound(
        errors=errors,
        n=n,
        delta=delta,
        empirical_error=errors / n,
        bound=binomial_tail_inversion(errors, n, delta),
        kl_bound=kl_inverse_upper(errors / n, math.log(1.0 / delta) / n),
    )


test_set_bound.__test__ = False  # a library function, not a pytest test, despite its name
