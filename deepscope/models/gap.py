"""The train/test generalisation gap with a confidence interval on the population error.

The gap is ``test error - train error``. The training error is an exact property of the model on
its training set; the uncertainty lies in the test error, an unbiased estimate of the population
error from ``n`` independent test examples (k mistakes, ``k ~ Binomial(n, p)``). The interval is
the Wilson score interval (Wilson 1927) on ``p``,

    (p̂ + z²/2n ± z √(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n),

shifted by the training error. Unlike the plain normal approximation it stays inside [0, 1] and
does not collapse to a point when the test error is 0.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Any

from deepscope._validation import check_float, check_int, check_probability
from deepscope.results import Result

__all__ = ["GapEstimate", "generalization_gap", "evaluation_gap", "wilson_interval"]


@dataclasses.dataclass(frozen=True)
class GapEstimate(Result):
    """Generalisation gap with a confidence interval.

    Attributes:
        train_error, test_error: error rates (1 - accuracy), or mean losses when ``metric="loss"``.
        gap: ``test_error - train_error``.
        lower, upper: the interval on the population gap (None for losses, which have no
            binomial model).
        confidence: coverage of the interval (e.g. 0.95).
        n_train, n_test: examples behind each number.
        metric: "error" or "loss".
        method: how the interval was computed.
    """

    train_error: float
    test_error: float
    gap: float
    lower: float | None
    upper: float | None
    confidence: float
    n_train: int | None
    n_test: int
    metric: str = "error"
    method: str = "Wilson score interval on the test error (Wilson 1927); train error exact"

    def sentence(self) -> str:
        """Deprecated alias of :meth:`summary` (the one name for a result's headline); removed in 0.2."""
        return self.summary()

    def summary(self) -> str:
        """One plain sentence describing the gap."""
        if self.lower is None or self.upper is None:
            return f"Test loss exceeds train loss by {self.gap:.4g} (on {self.n_test} test examples)."
        return (
            f"Test error {self.test_error:.1%} vs train error {self.train_error:.1%}: gap {self.gap:+.1%} "
            f"({self.confidence:.0%} interval {self.lower:+.1%} to {self.upper:+.1%}, {self.n_test} test examples)."
        )


def wilson_interval(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``errors / n`` (Wilson 1927).

    Example:
        >>> low, high = wilson_interval(0, 100)
        >>> low == 0.0 and 0.03 < high < 0.04
        True
    """
    n = check_int(n, "n", "wilson_interval", minimum=1)
    errors = check_int(errors, "errors", "wilson_interval", minimum=0, maximum=n)
    confidence = check_probability(confidence, "confidence", "wilson_interval")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = errors / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if errors == 0 else max(0.0, center - half)  # exactly 0 analytically; avoid round-off
    high = 1.0 if errors == n else min(1.0, center + half)
    return low, high


def generalization_gap(
    train_accuracy: float | None,
    test_accuracy: float | None,
    n_test: int,
    *,
    n_train: int | None = None,
    train_loss: float | None = None,
    test_loss: float | None = None,
    confidence: float = 0.95,
) -> GapEstimate:
    """Final test error minus train error, with a Wilson confidence interval from the test size.

    Args:
        train_accuracy, test_accuracy: accuracies in [0, 1] (None for regression: then the
            losses are compared and no interval is given).
        n_test: number of test examples (the interval's sample size).
        n_train: number of training examples (recorded only).
        train_loss, test_loss: mean losses, used when accuracies are None.
        confidence: coverage of the interval.

    Returns:
        A :class:`GapEstimate`.

    Example:
        >>> estimate = generalization_gap(1.0, 0.95, 400)
        >>> round(estimate.gap, 3), estimate.lower < 0.05 < estimate.upper
        (0.05, True)
    """
    n_test = check_int(n_test, "n_test", "generalization_gap", minimum=1)
    confidence = check_probability(confidence, "confidence", "generalization_gap")
    if train_accuracy is None or test_accuracy is None:
        if train_loss is None or test_loss is None:
            check_float(train_accuracy, "train_accuracy", "generalization_gap", minimum=0.0, maximum=1.0)
        train_value = check_float(train_loss, "train_loss", "generalization_gap")
        test_value = check_float(test_loss, "test_loss", "generalization_gap")
        return GapEstimate(
            train_value, test_value, test_value - train_value, None, None, confidence, n_train, n_test, "loss", "none"
        )
    train_error = 1.0 - check_float(train_accuracy, "train_accuracy", "generalization_gap", minimum=0.0, maximum=1.0)
    test_error = 1.0 - check_float(test_accuracy, "test_accuracy", "generalization_gap", minimum=0.0, maximum=1.0)
    mistakes = min(n_test, max(0, round(test_error * n_test)))
    low, high = wilson_interval(mistakes, n_test, confidence)
    return GapEstimate(
        train_error=train_error,
        test_error=test_error,
        gap=test_error - train_error,
        lower=low - train_error,
        upper=high - train_error,
        confidence=confidence,
        n_train=n_train,
        n_test=n_test,
    )


def evaluation_gap(train: Any, test: Any, *, confidence: float = 0.95) -> GapEstimate:
    """The gap of a model from its evaluations on the train and test splits.

    ``train`` and ``test`` are :class:`deepscope.problem.Evaluation` objects (``.accuracy``, ``.loss``,
    ``.n``), as ``Problem.evaluate`` returns them: accuracies when the task is classification, else
    the losses. This is the one place that turns a pair of evaluations into a gap (the report's
    training section and :func:`deepscope.generalization.diagnostics.gap_estimate` both use it).

    Example:
        >>> from types import SimpleNamespace as Evaluation
        >>> gap = evaluation_gap(Evaluation(loss=0.1, accuracy=1.0, n=50), Evaluation(loss=0.3, accuracy=0.9, n=100))
        >>> round(gap.gap, 3), gap.n_train
        (0.1, 50)
    """
    return generalization_gap(
        train.accuracy,
        test.accuracy,
        test.n,
        n_train=train.n,
        train_loss=train.loss,
        test_loss=test.loss,
        confidence=confidence,
    )
