"""digits / breast_cancer / wine: shapes, ranges, train-only standardisation, determinism."""

import numpy as np
import pytest
import torch
from sklearn import datasets as sk

from deepscope.data.sklearn_sets import load_breast_cancer, load_digits, load_wine
from deepscope.errors import InvalidParameterError


def test_digits_shape_range_and_content_match_sklearn():
    data = load_digits(seed=0)
    assert data.x_train.shape[1:] == (1, 8, 8) and data.x_train.dtype == torch.float32
    assert len(data.x_train) + len(data.x_test) == 1797
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert data.num_classes == 10 and data.y_train.dtype == torch.int64
    # oracle: every image is a row of sklearn's array divided by 16, with its label
    reference = {
        img.tobytes(): int(t)
        for img, t in zip((sk.load_digits().images / 16.0).astype(np.float32), sk.load_digits().target)
    }
    for image, label in zip(data.x_test[:50], data.y_test[:50]):
        assert reference[image[0].numpy().tobytes()] == int(label)


def test_digits_split_is_stratified_and_seeded():
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)
    counts = torch.bincount(a.y_test, minlength=10).float()
    totals = counts + torch.bincount(a.y_train, minlength=10).float()
    # per-class test share is round(n_c / 4) / n_c: within half an example of 25%
    assert torch.all((counts - 0.25 * totals).abs() <= 0.5)


@pytest.mark.parametrize("loader, d, classes", [(load_breast_cancer, 30, 2), (load_wine, 13, 3)])
def test_tabular_standardised_with_train_statistics(loader, d, classes):
    data = loader(seed=0)
    assert data.input_shape == (d,) and data.num_classes == classes
    assert len(data.feature_names) == d
    # float32 statistics of O(1) numbers: 1e-4 absorbs rounding, anything leaky would be O(0.1)
    assert torch.allclose(data.x_train.mean(0), torch.zeros(d), atol=1e-4)
    assert torch.allclose(data.x_train.std(0, unbiased=False), torch.ones(d), atol=1e-4)
    assert not torch.allclose(data.x_test.mean(0), torch.zeros(d), atol=1e-3)  # test is not re-centred
    stats = data.info["standardisation"]
    assert len(stats["mean"]) == d


def test_subsample_and_bad_options():
    small = load_wine(n_samples=60, seed=0)
    assert len(small.y_train) + len(small.y_test) == 60
    assert set(small.y_train.tolist()) == {0, 1, 2}
    with pytest.raises(InvalidParameterError, match="'n_samples' parameter.*\\[6, 178\\]"):
        load_wine(n_samples=1000)
    with pytest.raises(InvalidParameterError, match="'test_fraction'"):
        load_wine(test_fraction=1.5)
    with pytest.raises(InvalidParameterError, match="'seed'"):
        load_wine(seed=-1)
