"""The gap against a hand computation, and the learning curve's sizes and interval consistency."""

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.errors import DataError
from deepscope.generalization.diagnostics import gap_estimate, learning_curve
from tests.generalization.diagnostics.conftest import blob_problem, blobs


def test_gap_estimate_by_hand():
    problem = blob_problem()
    estimate = gap_estimate(problem)
    with torch.no_grad():
        train_error = float((problem.model(problem.train.x).argmax(1) != problem.train.y).double().mean())
        test_error = float((problem.model(problem.test.x).argmax(1) != problem.test.y).double().mean())
    assert estimate.gap == pytest.approx(test_error - train_error)
    assert estimate.lower <= estimate.gap <= estimate.upper


def test_learning_curve():
    curve = learning_curve(blob_problem(), fractions=(0.25, 1.0), epochs=30, lr=0.01)
    assert curve.sizes == [16, 64]
    for row in curve.rows():
        assert row["gap_lower"] <= row["gap"] <= row["gap_upper"]
    assert curve.test_error[-1] < 0.2  # well-separated blobs: the full-size copy generalises


def test_a_learning_curve_needs_test_data():
    model = nn.Linear(2, 3)
    with pytest.raises(DataError, match="test data"):
        learning_curve(Problem(model, blobs(10, 0)))
