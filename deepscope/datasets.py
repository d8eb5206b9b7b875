"""Datasets, public entry point: ``deepscope.datasets.load(name_or_path, ...)`` and ``available()``.

The implementation lives in :mod:`deepscope.data` (one file per source); this module re-exports
exactly its public names (``deepscope.data.__all__``), so the list is kept in one place.

Example:
    >>> from deepscope import datasets
    >>> data = datasets.load("planted_tabular", seed=0, n_samples=200)
    >>> data.mask_train.shape == data.x_train.shape
    True
"""

from deepscope import data as _data
from deepscope.data import *  # noqa: F403  (the names listed in deepscope.data.__all__)

__all__ = list(_data.__all__)
