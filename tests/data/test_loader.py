"""deepscope.datasets.load: built-in names, user files by path, and the errors for everything else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope.data.loader import available, load
from deepscope.errors import DataError, InvalidParameterError


def test_available_lists_the_built_in_sets():
    assert available()[:2] == ["digits", "mnist1d"] and "planted_image" in available()


def test_a_name_is_case_and_space_insensitive_and_deterministic():
    a, b = load(" Digits ", seed=1, n_samples=100), load("digits", seed=1, n_samples=100)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert len(a.x_train) + len(a.x_test) == 100
    assert not torch.equal(load("digits", seed=2, n_samples=100).x_train, a.x_train)


def test_a_path_is_read_as_a_file(tmp_path):
    path = tmp_path / "set.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(40, 3)).astype("float32"), y=np.arange(40) % 2)
    data = load(path, seed=0)
    assert data.x_train.shape[1:] == (3,) and len(data.x_train) + len(data.x_test) == 40
    assert torch.equal(load(str(path), seed=0).x_train, data.x_train)  # a str with a suffix is a path too


def test_unknown_names_types_and_options():
    with pytest.raises(DataError, match=r"^Unknown dataset 'digitz'\. Available: digits, mnist1d"):
        load("digitz")
    with pytest.raises(InvalidParameterError, match="must be a dataset name or a file path. Got int instead"):
        load(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=r"Unknown option\(s\) \['colour'\] for dataset 'digits'"):
        load("digits", colour="red")
