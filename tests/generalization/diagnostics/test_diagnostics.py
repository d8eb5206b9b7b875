"""Diagnostics: exact label corruption, memorisation of random labels by a wide net, interval
consistency of the learning curve, the gap against a hand computation, regularisation effects."""

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.errors import DataError, InvalidParameterError, UnsupportedModelError
from deepscope.generalization.diagnostics import (
    gap_estimate,
    label_noise_sensitivity,
    learning_curve,
    memorisation_probe,
    regularisation_comparison,
)
from deepscope.generalization.diagnostics.label_noise import corrupt_labels
from deepscope.generalization.diagnostics.regularisation import random_shift


def _blobs(n, seed):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=generator)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return torch.randn(n, 2, generator=generator) * 0.6 + centres[y], y


def _problem(width=32, dropout=False):
    torch.manual_seed(0)
    layers = [nn.Linear(2, width), nn.ReLU()] + ([nn.Dropout(0.1)] if dropout else []) + [nn.Linear(width, 3)]
    model = nn.Sequential(*layers)
    return Problem(
        model, _blobs(64, 0), _blobs(200, 1), init_state={k: v.clone() for k, v in model.state_dict().items()}
    )


def test_corrupt_labels_changes_exactly_that_many():
    y = torch.randint(0, 4, (100,))
    noisy = corrupt_labels(y, 0.3, 4, torch.Generator().manual_seed(0))
    assert int((noisy != y).sum()) == 30  # every chosen label moves to a different class
    assert int(noisy.min()) >= 0 and int(noisy.max()) <= 3


def test_memorisation_of_random_labels():
    result = memorisation_probe(_problem(width=256), epochs=200, lr=0.01, batch_size=16, target_accuracy=1.0)
    assert result.random_epochs_to_fit is not None and result.random_final_accuracy == 1.0
    assert result.true_epochs_to_fit is not None and result.true_epochs_to_fit <= result.random_epochs_to_fit
    assert result.random_curve[0] < 0.7 and "memorise" in result.summary()


def test_gap_estimate_by_hand():
    problem = _problem()
    estimate = gap_estimate(problem)
    with torch.no_grad():
        train_error = float((problem.model(problem.train.x).argmax(1) != problem.train.y).double().mean())
        test_error = float((problem.model(problem.test.x).argmax(1) != problem.test.y).double().mean())
    assert estimate.gap == pytest.approx(test_error - train_error)
    assert estimate.lower <= estimate.gap <= estimate.upper


def test_learning_curve_and_label_noise():
    problem = _problem()
    curve = learning_curve(problem, fractions=(0.25, 1.0), epochs=30, lr=0.01)
    assert curve.sizes == [16, 64]
    for row in curve.rows():
        assert row["gap_lower"] <= row["gap"] <= row["gap_upper"]
    assert curve.test_error[-1] < 0.2  # well-separated blobs: the full-size copy generalises
    noise = label_noise_sensitivity(problem, levels=(0.0, 0.5), epochs=30, lr=0.01)
    clean, noisy = noise.rows()
    assert noisy["train_accuracy"] < clean["train_accuracy"]  # the corrupted half is hard to fit


def test_regularisation_comparison():
    result = regularisation_comparison(
        _problem(), settings=("none", "weight_decay", "dropout", "augmentation"), epochs=20, lr=0.01, weight_decay=0.5
    )
    rows = {row["setting"]: row for row in result.rows()}
    assert set(rows) == {"none", "weight_decay"}
    assert any("Dropout" in entry for entry in result.not_defined) and any("tabular" in e for e in result.not_defined)
    # a strong L2 penalty keeps the weights closer to the origin: smaller spectral norms
    assert rows["weight_decay"]["log_product_spectral"] < rows["none"]["log_product_spectral"]


def test_random_shift_moves_by_one_with_zero_fill():
    x = torch.arange(1.0, 6.0).reshape(1, 1, 5)
    shifted = {tuple(random_shift(x, torch.Generator().manual_seed(s)).flatten().tolist()) for s in range(20)}
    assert shifted == {(1.0, 2.0, 3.0, 4.0, 5.0), (0.0, 1.0, 2.0, 3.0, 4.0), (2.0, 3.0, 4.0, 5.0, 0.0)}


def test_bad_input():
    model = nn.Linear(2, 3)
    with pytest.raises(DataError, match="test data"):
        learning_curve(Problem(model, _blobs(10, 0)))
    with pytest.raises(UnsupportedModelError, match="classification"):
        memorisation_probe(Problem(nn.Linear(2, 1), (torch.randn(10, 2), torch.randn(10, 1)), loss="mse"))
    with pytest.raises(InvalidParameterError, match="settings"):
        regularisation_comparison(_problem(), settings=("magic",))
