import pytest
from scipy import stats

from deepscope.errors import InvalidParameterError
from deepscope.models import generalization_gap
from deepscope.models.gap import wilson_interval


@pytest.mark.parametrize("errors,n", [(0, 50), (3, 50), (25, 50), (50, 50), (7, 450), (1, 1)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_interval_matches_scipy(errors, n, confidence):
    # oracle: SciPy's BinomTestResult.proportion_ci(method="wilson"); closed forms agree to round-off
    expected = stats.binomtest(errors, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson_interval(errors, n, confidence)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_gap_interval_is_the_test_error_interval_shifted_by_train_error():
    estimate = generalization_gap(0.99, 0.90, 200, n_train=600)
    low, high = wilson_interval(20, 200)
    assert estimate.gap == pytest.approx(0.09)
    assert estimate.lower == pytest.approx(low - 0.01)
    assert estimate.upper == pytest.approx(high - 0.01)
    assert estimate.lower < estimate.gap < estimate.upper
    assert "gap" in estimate.sentence()


def test_interval_shrinks_like_one_over_root_n():
    small = generalization_gap(1.0, 0.9, 100)
    large = generalization_gap(1.0, 0.9, 10_000)
    ratio = (small.upper - small.lower) / (large.upper - large.lower)
    assert ratio == pytest.approx(10, rel=0.05)  # width ∝ 1/√n up to the Wilson correction


def test_regression_compares_losses_without_interval():
    estimate = generalization_gap(None, None, 30, train_loss=0.5, test_loss=0.8)
    assert estimate.metric == "loss"
    assert estimate.gap == pytest.approx(0.3)
    assert estimate.lower is None and estimate.upper is None


def test_invalid_inputs():
    with pytest.raises(InvalidParameterError, match="n_test"):
        generalization_gap(1.0, 0.9, 0)
    with pytest.raises(InvalidParameterError, match="test_accuracy"):
        generalization_gap(1.0, 1.5, 10)
    with pytest.raises(InvalidParameterError, match="confidence"):
        generalization_gap(1.0, 0.9, 10, confidence=1.0)


def test_evaluation_gap_is_generalization_gap_of_two_evaluations():
    from deepscope.models.gap import evaluation_gap
    from deepscope.problem import Evaluation

    train, test = Evaluation(loss=0.2, accuracy=0.96, n=300), Evaluation(loss=0.5, accuracy=0.87, n=120)
    expected = generalization_gap(0.96, 0.87, 120, n_train=300, train_loss=0.2, test_loss=0.5, confidence=0.9)
    assert evaluation_gap(train, test, confidence=0.9) == expected
    regression = evaluation_gap(Evaluation(0.2, None, 300), Evaluation(0.5, None, 120))
    assert regression.metric == "loss" and regression.gap == 0.5 - 0.2 and regression.lower is None


def test_gap_estimate_and_the_training_section_share_evaluation_gap():
    from deepscope.dynamics.report_section import training_section
    from deepscope.generalization.diagnostics import gap_estimate
    from deepscope.models.gap import evaluation_gap
    from deepscope.report.sections import AuditContext
    from deepscope.testing import make_fixture

    problem = make_fixture("mlp").problem()
    expected = evaluation_gap(problem.evaluate("train"), problem.evaluate("test"))
    assert gap_estimate(problem) == expected
    assert training_section(AuditContext(problem=problem)).results["generalization_gap"] == expected
