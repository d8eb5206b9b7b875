"""The gallery's small statistics, against values computed by hand or by SciPy directly."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from deepscope.experiments._stats import decide, mean_se, one_sided_t, paired_one_sided, spearman_one_sided


def test_mean_se_by_hand_and_its_edge_cases():
    mean, se = mean_se([1.0, 2.0, 3.0, float("nan")])  # NaN entries (failed runs) are dropped
    assert mean == 2.0 and se == pytest.approx(1.0 / math.sqrt(3))
    assert mean_se([4.0])[0] == 4.0 and math.isnan(mean_se([4.0])[1])
    assert all(math.isnan(v) for v in mean_se([]))


def test_the_tests_are_scipys_one_sided_tests():
    a, b = [3.1, 2.9, 3.4, 3.0], [2.0, 2.2, 1.9, 2.4]
    t, p = one_sided_t(a, b)
    assert t > 0 and p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue / 2)
    t, p = paired_one_sided(a, b)
    assert p == pytest.approx(stats.ttest_rel(a, b).pvalue / 2)
    rho, p = spearman_one_sided([1, 2, 3, 4, 5], [2, 3, 5, 4, 6])
    assert rho == pytest.approx(0.9) and p < 0.05
    rho, p = spearman_one_sided([1, 2, 3, 4, 5], [6, 5, 3, 4, 2], negative=True)
    assert rho == pytest.approx(-0.9) and p < 0.05


def test_decide():
    assert decide(True, 0.01, 0.05) is True
    assert decide(False, 0.01, 0.05) is None  # significant, but the wrong sign and no opposite test
    assert decide(False, 0.9, 0.05, p_value_opposite=0.01) is False
    assert decide(True, 0.2, 0.05, p_value_opposite=0.8) is None
