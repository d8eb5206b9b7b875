"""Datasets, public entry point: ``deepscope.datasets.load(name_or_path, ...)`` and ``available()``.

The implementation lives in :mod:`deepscope.data` (one file per source); this module re-exports it.

Example:
    >>> from deepscope import datasets
    >>> data = datasets.load("planted_tabular", seed=0, n_samples=200)
    >>> data.mask_train.shape == data.x_train.shape
    True
"""

from deepscope.data import (
    DatasetSplits,
    available,
    load,
    load_breast_cancer,
    load_digits,
    load_file,
    load_mnist1d,
    load_wine,
    planted_image,
    planted_motifs,
    planted_tabular,
)

__all__ = [
    "DatasetSplits",
    "available",
    "load",
    "load_breast_cancer",
    "load_digits",
    "load_file",
    "load_mnist1d",
    "load_wine",
    "planted_image",
    "planted_motifs",
    "planted_tabular",
]
