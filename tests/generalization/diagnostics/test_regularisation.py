"""Regularisation comparison: which settings apply to the model, and their effect on the weights."""

import pytest
import torch

from deepscope.errors import InvalidParameterError
from deepscope.generalization.diagnostics import regularisation_comparison
from deepscope.generalization.diagnostics.regularisation import random_shift
from tests.generalization.diagnostics.conftest import blob_problem


def test_regularisation_comparison():
    result = regularisation_comparison(
        blob_problem(),
        settings=("none", "weight_decay", "dropout", "augmentation"),
        epochs=20,
        lr=0.01,
        weight_decay=0.5,
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


def test_unknown_setting():
    with pytest.raises(InvalidParameterError, match="settings"):
        regularisation_comparison(blob_problem(), settings=("magic",))
