"""``load(name_or_path)``: one entry point for the built-in datasets and user data files."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepscope.data._base import DatasetSplits
from deepscope.data.files import SUFFIXES, load_file
from deepscope.data.mnist1d_set import load_mnist1d
from deepscope.data.planted import planted_image, planted_motifs, planted_tabular
from deepscope.data.sklearn_sets import load_breast_cancer, load_digits, load_wine
from deepscope.errors import DataError, InvalidParameterError

__all__ = ["load", "available"]

_BUILT_IN: dict[str, Callable[..., DatasetSplits]] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "planted_tabular": planted_tabular,
    "planted_image": planted_image,
    "planted_motifs": planted_motifs,
}


def available() -> list[str]:
    """Names of the built-in datasets, in the order of the docs.

    Example:
        >>> "digits" in available()
        True
    """
    return list(_BUILT_IN)


def load(
    name_or_path: str | Path,
    *,
    seed: int = 0,
    n_samples: int | None = None,
    test_fraction: float = 0.25,
    **options: Any,
) -> DatasetSplits:
    """Load a built-in dataset by name, or a user file (``.npz``, ``.csv``, ``.pt``) by path.

    Nothing is downloaded: the real sets ship with scikit-learn, MNIST-1D is generated locally (and
    cached), the planted sets are generated from ``seed``. The same arguments give identical tensors.

    Args:
        name_or_path: one of :func:`available` or a path to a data file.
        seed: seed of generation, subsampling and the train/test split.
        n_samples: total examples to generate or keep (default: the source's own size).
        test_fraction: share held out for the test split (when the source does not fix one).
        **options: source-specific options, e.g. ``n_informative`` for "planted_tabular",
            ``label_column`` for a CSV, ``cache=False`` for "mnist1d" (see docs/data.md).

    Returns:
        DatasetSplits: ``x_train, y_train, x_test, y_test`` (+ ``mask_*`` for planted sets).

    Raises:
        DataError: unknown name, missing or unreadable file, NaN/empty data, bad labels.
        InvalidParameterError: an option with the wrong type or range, or an unknown option.

    Example:
        >>> data = load("digits", seed=0)
        >>> data.x_train.shape[1:]
        torch.Size([1, 8, 8])
    """
    if isinstance(name_or_path, Path) or (
        isinstance(name_or_path, str) and (Path(name_or_path).suffix.lower() in SUFFIXES or "/" in name_or_path)
    ):
        source: Callable[..., DatasetSplits] = load_file
        args: tuple[Any, ...] = (name_or_path,)
        label = f"data file '{name_or_path}'"
    elif isinstance(name_or_path, str) and name_or_path.strip().lower() in _BUILT_IN:
        source, args = _BUILT_IN[name_or_path.strip().lower()], ()
        label = f"dataset '{name_or_path}'"
    elif isinstance(name_or_path, str):
        raise DataError(
            f"Unknown dataset '{name_or_path}'. Available: {', '.join(available())}; "
            f"or give a path to a {'/'.join(SUFFIXES)} file."
        )
    else:
        raise InvalidParameterError(
            "The 'name_or_path' parameter of deepscope.datasets.load must be a dataset name or a file path. "
            f"Got {type(name_or_path).__name__} instead."
        )
    accepted = set(inspect.signature(source).parameters) - {"path", "seed", "n_samples", "test_fraction"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise InvalidParameterError(
            f"Unknown option(s) {unknown} for {label}; it accepts {sorted(accepted) or 'no extra options'}."
        )
    return source(*args, seed=seed, n_samples=n_samples, test_fraction=test_fraction, **options)
