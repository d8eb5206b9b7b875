"""DatasetSplits: the checked container every dataset returns."""

from __future__ import annotations

import pytest
import torch

from deepscope.data._base import DatasetSplits
from deepscope.errors import DataError, InvalidParameterError


def _splits(**changes):
    fields = {
        "name": "toy",
        "x_train": torch.zeros(6, 2, 3),
        "y_train": torch.zeros(6, dtype=torch.long),
        "x_test": torch.zeros(2, 2, 3),
        "y_test": torch.zeros(2, dtype=torch.long),
        "num_classes": 2,
    }
    return DatasetSplits(**{**fields, **changes})


def test_properties_and_summary():
    data = _splits()
    assert data.input_shape == (2, 3) and data.train[0] is data.x_train and data.test[1] is data.y_test
    assert not data.has_ground_truth and _splits(mask_train=torch.ones(6, 2, 3)).has_ground_truth
    assert data.summary() == {
        "name": "toy",
        "task": "classification",
        "train_size": 6,
        "test_size": 2,
        "input_shape": [2, 3],
        "num_classes": 2,
        "ground_truth": False,
    }


def test_mismatched_empty_and_non_tensor_splits_are_refused():
    with pytest.raises(DataError, match="x_test has 2 rows but y_test has 3"):
        _splits(y_test=torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="'toy' has an empty training split"):
        _splits(x_train=torch.zeros(0, 2, 3), y_train=torch.zeros(0, dtype=torch.long))
    with pytest.raises(InvalidParameterError, match="'y_train' parameter of DatasetSplits must be a tensor"):
        _splits(y_train=[0, 1, 0, 1, 0, 1])
    with pytest.raises(InvalidParameterError, match="'x_test' parameter"):
        _splits(x_test=torch.tensor(1.0))
    assert len(_splits(x_test=torch.zeros(0, 2, 3), y_test=torch.zeros(0)).x_test) == 0  # an empty test split is fine
