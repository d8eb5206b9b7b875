"""MNIST-1D: generated with the mnist1d package (never downloaded), cached atomically, seeded."""

import random

import numpy as np
import pytest
import torch

from deepscope.data import mnist1d_set
from deepscope.data.mnist1d_set import load_mnist1d


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSCOPE_CACHE", str(tmp_path))
    return tmp_path


def test_matches_mnist1d_make_dataset(cache):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = 200, 3, 0.75
    reference = make_dataset(args)  # oracle: the package itself, same arguments
    data = load_mnist1d(seed=3, n_samples=200, test_fraction=0.25)
    assert data.x_train.shape == (150, 1, 40) and data.x_test.shape == (50, 1, 40)
    np.testing.assert_allclose(data.x_train[:, 0].numpy(), reference["x"], rtol=1e-6)  # float64 -> float32 only
    np.testing.assert_array_equal(data.y_test.numpy(), reference["y_test"])
    assert data.num_classes == 10


def test_cached_once_then_read_back_identically(cache):
    first = load_mnist1d(seed=1, n_samples=100)
    files = list(cache.iterdir())
    assert [f.name for f in files] == ["mnist1d_v1_n100_seed1.npz"]  # no temporary file left behind
    assert first.info["from_cache"] is False
    second = load_mnist1d(seed=1, n_samples=100)
    assert second.info["from_cache"] is True
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_test, second.y_test)
    assert not torch.equal(load_mnist1d(seed=2, n_samples=100).x_train, first.x_train)


def test_corrupt_cache_is_regenerated(cache):
    good = load_mnist1d(seed=0, n_samples=60)
    path = cache / "mnist1d_v1_n60_seed0.npz"
    path.write_bytes(b"truncated")
    again = load_mnist1d(seed=0, n_samples=60)
    assert again.info["from_cache"] is False and torch.equal(good.x_train, again.x_train)
    assert np.load(path)["x"].shape == (60, 40)


def test_sample_count_not_multiple_of_ten_and_no_global_rng_side_effect(cache):
    np.random.seed(123)
    random.seed(123)
    expected_numpy, expected_python = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    data = load_mnist1d(seed=0, n_samples=45, cache=False)
    assert len(data.y_train) + len(data.y_test) == 45
    assert np.random.rand() == expected_numpy and random.random() == expected_python
    assert list(cache.iterdir()) == []  # cache=False writes nothing


def test_never_downloads(cache, monkeypatch):
    import mnist1d.data

    def refuse(*args, **kwargs):
        raise AssertionError("the download path must not be used")

    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    monkeypatch.setattr(mnist1d.data.requests, "get", refuse)
    assert len(load_mnist1d(seed=0, n_samples=20, cache=False).y_train) == 15


def test_unwritable_cache_warns_and_still_returns(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DEEPSCOPE_CACHE", str(blocker / "sub"))
    with pytest.warns(UserWarning, match="could not cache"):
        data = load_mnist1d(seed=0, n_samples=20)
    assert len(data.y_test) == 5
    assert mnist1d_set.cache_dir() == blocker / "sub"


@pytest.mark.slow
def test_sixty_thousand_samples_balanced_and_cached(cache):
    data = load_mnist1d(seed=0, n_samples=60000)  # about 12 s on one core
    assert data.x_train.shape == (45000, 1, 40) and data.x_test.shape == (15000, 1, 40)
    counts = torch.bincount(torch.cat([data.y_train, data.y_test]), minlength=10)
    assert counts.tolist() == [6000] * 10  # make_dataset draws num_samples // 10 examples per class
    # the package standardises the whole set: mean 0, std 1 up to float32 rounding
    everything = torch.cat([data.x_train, data.x_test])
    assert abs(float(everything.mean())) < 1e-4 and abs(float(everything.std()) - 1.0) < 1e-4
    assert load_mnist1d(seed=0, n_samples=60000).info["from_cache"] is True
