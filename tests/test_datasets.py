"""deepscope.datasets.load: names, paths, options, determinism, the contract's shapes."""

import numpy as np
import pytest
import torch

from deepscope import datasets
from deepscope.data import DatasetSplits
from deepscope.errors import DataError, InvalidParameterError


def test_available_lists_the_contract_names():
    assert datasets.available() == [
        "digits",
        "mnist1d",
        "breast_cancer",
        "wine",
        "planted_tabular",
        "planted_image",
        "planted_motifs",
    ]


@pytest.mark.parametrize(
    "name, shape",
    [
        ("digits", (1, 8, 8)),
        ("breast_cancer", (30,)),
        ("wine", (13,)),
        ("planted_tabular", (20,)),
        ("planted_image", (1, 16, 16)),
        ("planted_motifs", (4, 100)),
        ("mnist1d", (1, 40)),
    ],
)
def test_every_name_loads_with_contract_shape_and_is_deterministic(name, shape, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSCOPE_CACHE", str(tmp_path))
    kwargs = {"n_samples": 200} if name in ("mnist1d", "planted_tabular", "planted_image", "planted_motifs") else {}
    a = datasets.load(name, seed=0, **kwargs)
    b = datasets.load(name, seed=0, **kwargs)
    assert isinstance(a, DatasetSplits) and a.name == name and a.input_shape == shape
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert len(a.x_test) > 0 and a.description
    assert a.has_ground_truth == name.startswith("planted")


def test_test_fraction_and_options_are_forwarded():
    data = datasets.load("planted_tabular", seed=1, n_samples=400, test_fraction=0.5, n_features=8, n_informative=2)
    assert len(data.x_test) == 200 and data.input_shape == (8,)
    assert len(data.info["informative_features"]) == 2


def test_unknown_name_lists_available():
    with pytest.raises(DataError, match="Unknown dataset 'mnist'. Available: digits, mnist1d, breast_cancer"):
        datasets.load("mnist")


def test_unknown_option_and_bad_type():
    with pytest.raises(InvalidParameterError, match="Unknown option\\(s\\) \\['n_informative'\\] for dataset 'digits'"):
        datasets.load("digits", n_informative=3)
    with pytest.raises(InvalidParameterError, match="'name_or_path' parameter"):
        datasets.load(3)


def test_paths_dispatch_to_file_loader(tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(20, 2)), y=np.arange(20) % 2)
    assert datasets.load(str(path)).name == "mine"
    with pytest.raises(InvalidParameterError, match="'label_column'.*None for a .npz file.*Got 'label'"):
        datasets.load(path, label_column="label")  # only a CSV has columns: refused, not silently ignored
    with pytest.raises(DataError, match="does not exist"):
        datasets.load(str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="does not exist"):
        datasets.load("some/dir/file")  # looks like a path, so it is reported as a missing file
