"""Learning curves in the training-set size, and the train/test gap of the model with its interval.

``gap_estimate`` evaluates the trained model itself: train and test error, gap, and a Wilson
interval on the population gap from the test size (Wilson 1927; via ``deepscope.models.gap``).
``learning_curve`` retrains copies (from the initial weights) on growing fractions of the
training set and reports train error, test error and the gap with its interval at each size — the
sample-size axis of double descent (Nakkiran et al. 2019).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from deepscope import _inputs
from deepscope._validation import check_float_sequence, check_probability
from deepscope.errors import DataError, UnsupportedModelError, invalid_parameter
from deepscope.generalization.diagnostics._training import check_training, error_rate, fit, fresh_copy
from deepscope.models.gap import GapEstimate, evaluation_gap, generalization_gap
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["LearningCurve", "learning_curve", "gap_estimate"]


def _classification_split(problem: Problem, split: str, max_samples: int | None, owner: str):
    """``(x, y)`` of ``split`` for a classification Problem; errors name ``owner``, the function the user called."""
    if problem.num_classes is None:
        raise UnsupportedModelError(f"{owner} needs a classification loss. Got {problem.loss_name!r}.")
    if split == "test" and (problem.test is None or len(problem.test) == 0):
        raise DataError(f"{owner} needs test data: build the Problem with test=(X, y) (at least one example).")
    x, y = problem.tensors(split, max_samples=max_samples)
    return x, y.long()


@analysis(takes="problem", family="generalization", fixture="mlp")
def gap_estimate(problem: Problem, *, confidence: float = 0.95) -> GapEstimate:
    """Test error − train error of the trained model, with a Wilson interval from the test size.

    Example:
        >>> from deepscope.testing import make_fixture
        >>> estimate = gap_estimate(make_fixture("mlp").problem())
        >>> estimate.lower <= estimate.gap <= estimate.upper
        True
    """
    # validated here, so that the message names gap_estimate and not the generalization_gap it calls
    confidence = check_probability(confidence, "confidence", "gap_estimate")
    _classification_split(problem, "test", None, "gap_estimate")
    return evaluation_gap(problem.evaluate("train"), problem.evaluate("test"), confidence=confidence)


@dataclasses.dataclass(frozen=True)
class LearningCurve(Result):
    """Errors and gap (with its interval) against the number of training examples."""

    sizes: list[int]
    train_error: list[float]
    test_error: list[float]
    gap_lower: list[float]
    gap_upper: list[float]
    epochs: int
    n_test: int

    def rows(self) -> list[dict]:
        return [
            {"train_size": n, "train_error": a, "test_error": b, "gap": b - a, "gap_lower": lo, "gap_upper": hi}
            for n, a, b, lo, hi in zip(
                self.sizes, self.train_error, self.test_error, self.gap_lower, self.gap_upper, strict=True
            )
        ]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.5, 3.0) if ax is None else (ax.figure, ax)
        ax.plot(self.sizes, self.train_error, marker="o", label="train error")
        ax.plot(self.sizes, self.test_error, marker="s", label="test error")
        gaps = [b - a for a, b in zip(self.train_error, self.test_error, strict=True)]
        ax.errorbar(
            self.sizes,
            gaps,
            yerr=[
                [g - lo for g, lo in zip(gaps, self.gap_lower, strict=True)],
                [hi - g for g, hi in zip(gaps, self.gap_upper, strict=True)],
            ],
            label="gap (95% interval)",
            capsize=3,
        )
        ax.set_xlabel("training examples")
        ax.set_ylabel("error")
        ax.legend()
        return figure


@analysis(
    takes="problem", family="generalization", fixture="mlp", example_kwargs={"epochs": 1, "fractions": (0.5, 1.0)}
)
def learning_curve(
    problem: Problem,
    *,
    fractions: Sequence[float] = (0.125, 0.25, 0.5, 1.0),
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    max_samples: int | None = 4096,
    seed: int = 0,
) -> LearningCurve:
    """Retrain copies on growing fractions of the training set; errors and gap at each size.

    Args:
        problem: a classification :class:`deepscope.Problem` with test data.
        fractions: fractions of the (capped) training set, each in (0, 1].
        epochs, lr, batch_size: training of each copy (Adam, from the initial weights).
        max_samples: cap on training examples (bounded cost).
        seed: seed of the subsets and of training.
    """
    epochs, lr, batch_size = check_training("learning_curve", epochs=epochs, lr=lr, batch_size=batch_size)
    fractions = check_float_sequence(fractions, "fractions", "learning_curve", minimum=0.0, maximum=1.0)
    if not fractions or min(fractions) <= 0:
        raise invalid_parameter("fractions", "learning_curve", "a non-empty sequence of floats in (0, 1]", fractions)
    x, y = _classification_split(problem, "train", max_samples, "learning_curve")
    x_test, y_test = _classification_split(problem, "test", None, "learning_curve")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)
    sizes, train_errors, test_errors, lows, highs = [], [], [], [], []
    for fraction in sorted(fractions):
        size = max(2, int(round(fraction * len(y))))
        index = order[:size]
        subset = (_inputs.rows(x, index), y[index])
        model = fresh_copy(problem, seed)
        fit(model, subset, None, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, output_fn=problem.output_fn)
        train_error = error_rate(model, *subset, output_fn=problem.output_fn)
        test_error = error_rate(model, x_test, y_test, output_fn=problem.output_fn)
        estimate = generalization_gap(1 - train_error, 1 - test_error, len(y_test), n_train=size)
        sizes.append(size)
        train_errors.append(train_error)
        test_errors.append(test_error)
        lows.append(estimate.lower)
        highs.append(estimate.upper)
    return LearningCurve(sizes, train_errors, test_errors, lows, highs, epochs, len(y_test))
