"""Small statistics shared by the gallery's verdicts (each experiment states which one it uses).

* :func:`mean_se` — mean and standard error of the mean (sample standard deviation / sqrt(n)).
* :func:`one_sided_t` — Welch's t-test that mean(a) > mean(b) (Welch 1947), via SciPy.
* :func:`paired_one_sided` — the paired t-test that mean(a - b) > 0 over matched runs (seeds).
* :func:`spearman_one_sided` — Spearman's ρ between x and y and the one-sided p-value for ρ > 0
  (or ρ < 0 with ``negative=True``), via SciPy.
* :func:`decide` — a :class:`~deepscope.experiments._base.Verdict` from a p-value and α: held when
  p < α and the effect has the claimed sign; did not hold when the effect has the wrong sign with
  p < α the other way; inconclusive otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mean_se", "one_sided_t", "paired_one_sided", "spearman_one_sided", "decide"]


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error); the standard error is NaN for fewer than 2 values."""
    array = np.asarray([v for v in values if v == v], dtype=float)
    if len(array) == 0:
        return math.nan, math.nan
    if len(array) == 1:
        return float(array[0]), math.nan
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array)))


def one_sided_t(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t statistic and the one-sided p-value for mean(a) > mean(b)."""
    from scipy import stats

    result = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def paired_one_sided(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Paired t statistic and the one-sided p-value for mean(a - b) > 0."""
    from scipy import stats

    result = stats.ttest_rel(np.asarray(a, float), np.asarray(b, float), alternative="greater")
    return float(result.statistic), float(result.pvalue)


def spearman_one_sided(x: Sequence[float], y: Sequence[float], negative: bool = False) -> tuple[float, float]:
    """Spearman's ρ and the one-sided p-value for ρ > 0 (ρ < 0 with ``negative``)."""
    from scipy import stats

    result = stats.spearmanr(np.asarray(x, float), np.asarray(y, float), alternative="less" if negative else "greater")
    return float(result.statistic), float(result.pvalue)


def decide(effect_sign_ok: bool, p_value: float, alpha: float, p_value_opposite: float | None = None) -> bool | None:
    """True if the effect has the claimed sign and p < α; False if the opposite is significant; else None."""
    if effect_sign_ok and p_value < alpha:
        return True
    if p_value_opposite is not None and p_value_opposite < alpha:
        return False
    return None
