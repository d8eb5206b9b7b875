"""The small real datasets that scikit-learn ships on disk: digits, breast_cancer, wine (no network)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepscope.data._base import DatasetSplits
from deepscope.data._checks import check_n_samples, check_seed, check_test_fraction, standardise, stratified_split
from deepscope.data._checks import subsample as stratified_subsample
from deepscope.errors import invalid_parameter

__all__ = ["load_digits", "load_breast_cancer", "load_wine"]


def load_digits(*, seed: int = 0, n_samples: int | None = None, test_fraction: float = 0.25) -> DatasetSplits:
    """The 8x8 handwritten digits of scikit-learn (UCI optical digits; Alpaydin & Kaynak, 1998).

    1,797 grey images of the digits 0-9, pixel counts 0..16 divided by 16 so inputs lie in [0, 1].
    The split is stratified by class and fixed by ``seed``.

    Args:
        seed: seed of the (stratified) subsample and the train/test split.
        n_samples: use a stratified subset of this many images (default: all 1,797).
        test_fraction: share of each class held out for testing.

    Returns:
        DatasetSplits with ``x`` float32 ``(n, 1, 8, 8)`` in [0, 1] and ``y`` int64 ``(n,)`` in 0..9.

    Example:
        >>> data = load_digits(seed=0)
        >>> data.input_shape, data.num_classes
        ((1, 8, 8), 10)
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return _split("digits", x, bunch.target, seed, n_samples, test_fraction, scale=False, feature_names=None)


def load_breast_cancer(*, seed: int = 0, n_samples: int | None = None, test_fraction: float = 0.25) -> DatasetSplits:
    """Wisconsin diagnostic breast cancer (Street, Wolberg & Mangasarian, 1993): 569 x 30 features, 2 classes.

    Features are standardised with the TRAIN split's mean and standard deviation only (the statistics
    are kept in ``info["standardisation"]``), so nothing about the test split leaks into training.

    Args:
        seed: seed of the stratified subsample and split.
        n_samples: use a stratified subset of this many rows (default: all 569).
        test_fraction: share of each class held out for testing.

    Returns:
        DatasetSplits with ``x`` float32 ``(n, 30)``, ``y`` int64 (0 = malignant, 1 = benign).

    Example:
        >>> load_breast_cancer().input_shape
        (30,)
    """
    from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

    bunch = sklearn_breast_cancer()
    names = tuple(str(name) for name in bunch.feature_names)
    return _split("breast_cancer", bunch.data, bunch.target, seed, n_samples, test_fraction, True, names)


def load_wine(*, seed: int = 0, n_samples: int | None = None, test_fraction: float = 0.25) -> DatasetSplits:
    """UCI wine recognition (Forina et al., 1991): 178 x 13 chemical features, 3 cultivars.

    Standardised with TRAIN statistics only (kept in ``info["standardisation"]``).

    Args:
        seed: seed of the stratified subsample and split.
        n_samples: use a stratified subset of this many rows (default: all 178).
        test_fraction: share of each class held out for testing.

    Returns:
        DatasetSplits with ``x`` float32 ``(n, 13)``, ``y`` int64 in 0..2.

    Example:
        >>> load_wine().num_classes
        3
    """
    from sklearn.datasets import load_wine as sklearn_wine

    bunch = sklearn_wine()
    names = tuple(str(name) for name in bunch.feature_names)
    return _split("wine", bunch.data, bunch.target, seed, n_samples, test_fraction, True, names)


def _split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    seed: Any,
    n_samples: Any,
    test_fraction: Any,
    scale: bool,
    feature_names: tuple[str, ...] | None,
) -> DatasetSplits:
    owner = f"deepscope.datasets.load('{name}')"
    seed = check_seed(seed, owner)
    test_fraction = check_test_fraction(test_fraction, owner)
    n_samples = check_n_samples(n_samples, owner, minimum=2 * int(np.unique(y).size), maximum=len(y))
    y = np.asarray(y, dtype=np.int64)
    x = np.asarray(x, dtype=np.float32)
    if n_samples is not None and n_samples < len(y):
        chosen = stratified_subsample(y, len(y), n_samples, seed)
        x, y = x[chosen], y[chosen]
    train, test = stratified_split(y, len(y), test_fraction, seed)
    if len(test) == 0:
        raise invalid_parameter(
            "test_fraction", owner, f"large enough to hold out at least one of {len(y)} rows", test_fraction
        )
    x_train, x_test = x[train], x[test]
    info: dict[str, Any] = {"seed": seed, "test_fraction": test_fraction, "source": "scikit-learn (bundled, offline)"}
    if scale:
        x_train, x_test, info["standardisation"] = standardise(x_train, x_test)
    num_classes = int(y.max()) + 1
    return DatasetSplits(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(y[train]),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(y[test]),
        task="classification",
        num_classes=num_classes,
        feature_names=feature_names,
        description=(
            f"{name} from scikit-learn: {len(train)} train / {len(test)} test examples, {num_classes} classes, "
            f"stratified split with seed {seed}" + (", standardised with train statistics" if scale else "") + "."
        ),
        info=info,
    )
