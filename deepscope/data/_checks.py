"""Shared checks and helpers for every dataset source: validation, stratified split, standardisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepscope._allocation import check_allocation
from deepscope._validation import check_choice
from deepscope._validation import check_seed as _check_seed
from deepscope.errors import DataError, invalid_parameter

__all__ = [
    "as_inputs",
    "as_labels",
    "infer_task",
    "stratified_split",
    "subsample",
    "standardise",
    "check_seed",
    "check_test_fraction",
    "check_n_samples",
    "check_targets_fit",
]

TASKS = ("classification", "regression")


def check_seed(seed: Any, owner: str) -> int:
    """A seed is a non-negative int (numpy's generators refuse negatives) below 2**64 (torch's)."""
    return _check_seed(seed, owner)


def check_test_fraction(test_fraction: Any, owner: str) -> float:
    """The held-out share: a float strictly between 0 and 1."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise invalid_parameter("test_fraction", owner, "a float in the open interval (0, 1)", test_fraction)
    if not 0.0 < float(test_fraction) < 1.0:
        raise invalid_parameter("test_fraction", owner, "a float in the open interval (0, 1)", test_fraction)
    return float(test_fraction)


def check_n_samples(n_samples: Any, owner: str, *, minimum: int = 2, maximum: int | None = None) -> int | None:
    """``None`` (the source's default) or an int in ``[minimum, maximum]``."""
    if n_samples is None:
        return None
    bounds = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise invalid_parameter("n_samples", owner, f"None or {bounds}", n_samples)
    if n_samples < minimum or (maximum is not None and n_samples > maximum):
        raise invalid_parameter("n_samples", owner, f"None or {bounds}", n_samples)
    # the labels alone (one int64 each) must fit in memory; else the generator dies in the allocator
    check_allocation(int(n_samples), 1, torch.int64, "cpu", name="n_samples", owner=owner)
    return int(n_samples)


def as_inputs(x: Any, source: str, split: str = "train") -> torch.Tensor:
    """Inputs as a float32 tensor ``(n, *features)``; refuses empty, scalar, non-numeric or non-finite data."""
    try:
        array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(f"{source}: the {split} inputs are not a numeric array ({error}).") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{source}: the {split} inputs must be numeric; got dtype {array.dtype}.")
    if array.ndim < 2:
        raise DataError(
            f"{source}: the {split} inputs must have shape (n_examples, *features); got shape {tuple(array.shape)}."
        )
    if array.shape[0] == 0:
        raise DataError(f"{source}: the {split} split is empty (no examples).")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1))
        kind = "NaN" if np.isnan(array).any() else "infinite"
        raise DataError(
            f"{source}: the {split} inputs contain {kind} values in {len(bad_rows)} example(s), "
            f"first at row {int(bad_rows[0])}; remove or impute them."
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def infer_task(y: Any) -> str:
    """'classification' when every label is an integer value and ``y`` is 1-D, else 'regression'."""
    array = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.number):
        return "regression" if array.ndim == 2 else "classification"
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return "classification"
    finite = array[np.isfinite(array)]
    return "classification" if np.all(finite == np.round(finite)) else "regression"


def as_labels(
    y: Any, source: str, task: str, *, num_classes: int | None = None, split: str = "train"
) -> tuple[torch.Tensor, int | None]:
    """Labels as int64 ``(n,)`` in ``0..C-1`` (classification) or float32 (regression); returns ``(y, C)``.

    For classification, ``C`` is ``num_classes`` when given, else ``max(y) + 1``; without an explicit
    ``num_classes`` every class ``0..C-1`` must occur in the training labels (a gap usually means
    1-based or otherwise non-contiguous labels).
    """
    check_choice(task, "task", "deepscope.datasets.load", TASKS)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1
    ):
        raise invalid_parameter("num_classes", "deepscope.datasets.load", "None or an int >= 1", num_classes)
    try:
        array = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(f"{source}: the {split} labels are not a numeric array ({error}).") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{source}: the {split} labels must be numeric; got dtype {array.dtype}.")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 0 or array.shape[0] == 0:
        raise DataError(f"{source}: the {split} labels are empty (no examples).")
    if not np.isfinite(array.astype(np.float64)).all():
        raise DataError(f"{source}: the {split} labels contain NaN or infinite values.")
    if task == "regression":
        return torch.from_numpy(np.ascontiguousarray(array.astype(np.float32))), None
    if array.ndim != 1:
        raise DataError(
            f"{source}: classification labels must have shape (n_examples,); got shape {tuple(array.shape)}."
        )
    as_float = array.astype(np.float64)
    if not np.all(as_float == np.round(as_float)):
        raise DataError(
            f"{source}: classification labels must be integers 0..C-1; the {split} labels contain "
            f"non-integer values such as {float(as_float[as_float != np.round(as_float)][0])!r} "
            "(pass task='regression' for a real-valued target)."
        )
    labels = as_float.astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    classes = num_classes if num_classes is not None else high + 1
    if low < 0 or high >= classes:
        raise DataError(
            f"{source}: classification labels must be integers 0..{classes - 1}; the {split} labels range over "
            f"{low}..{high}. Re-encode them as 0..C-1 (e.g. sklearn.preprocessing.LabelEncoder)."
        )
    if num_classes is None and split == "train":
        missing = sorted(set(range(classes)) - set(np.unique(labels).tolist()))
        if missing:
            shown = ", ".join(str(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise DataError(
                f"{source}: classification labels must be the integers 0..C-1, but class(es) {shown} never "
                f"occur among the {split} labels {low}..{high}. Re-encode them as 0..C-1, or pass "
                f"num_classes={classes} if those classes are simply absent."
            )
    return torch.from_numpy(labels), int(classes)


def stratified_split(
    labels: np.ndarray | None, n: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into sorted (train, test) index arrays, per class when labels are given.

    Each class with ``n_c`` members sends ``round(n_c * test_fraction)`` of them to the test split
    (at most ``n_c - 1``, so every class stays in training); if that rounds to an empty test split,
    one example of the largest class is held out. Without labels (regression) the split is a plain
    seeded permutation.
    """
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
        n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    test_parts = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        members = members[rng.permutation(len(members))]
        n_test = min(int(round(len(members) * test_fraction)), len(members) - 1)
        test_parts.append(members[:n_test])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, dtype=np.int64)
    if len(test) == 0 and n >= 2:  # tiny data: rounding sent nothing to test; hold out one of the largest class
        values, counts = np.unique(labels, return_counts=True)
        if counts.max() >= 2:
            members = np.flatnonzero(labels == values[np.argmax(counts)])
            test = members[rng.integers(len(members))][None]
    keep = np.ones(n, dtype=bool)
    keep[test] = False
    return np.flatnonzero(keep), test


def subsample(labels: np.ndarray | None, n: int, n_samples: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded (stratified when labels are given) subset of size ``n_samples`` of ``range(n)``."""
    if n_samples >= n:
        return np.arange(n)
    _, chosen = stratified_split(labels, n, n_samples / n, seed)
    if len(chosen) != n_samples:  # per-class rounding can miss by a few; fix up with a seeded top-up or trim
        rng = np.random.default_rng(seed + 1)
        if len(chosen) > n_samples:
            chosen = np.sort(rng.choice(chosen, n_samples, replace=False))
        else:
            rest = np.setdiff1d(np.arange(n), chosen)
            chosen = np.sort(np.concatenate([chosen, rng.choice(rest, n_samples - len(chosen), replace=False)]))
    return chosen


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]]]:
    """Scale features to zero mean, unit variance using TRAIN statistics only (constant features keep std 1)."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    stats = {"mean": mean.astype(float).tolist(), "std": std.astype(float).tolist()}
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32), stats


def check_targets_fit(loss_name: str, output_shape: tuple[int, ...], y: torch.Tensor, where: str = "") -> None:
    """Raise DataError if targets ``y`` (n, ...) do not fit a model output of per-example ``output_shape``.

    For "cross_entropy"/"nll": integer labels in ``[0, classes)`` with shape (n,) for (n, classes)
    outputs; for "mse"/"bce_with_logits": as many finite values per example as the model has outputs
    (and values in [0, 1] for BCE). Any other loss name (a callable loss) is not checked. ``where``
    is added to the message (e.g. " (batch 3 of the train data)").
    """
    if len(y) == 0:
        return
    if loss_name in ("cross_entropy", "nll"):
        classes = output_shape[-1] if output_shape else 1
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            hint = "; for a real-valued target use loss='mse'" if y.is_floating_point() else ""
            raise DataError(
                f"Classification labels must be integers (class indices 0..{classes - 1} for a model with "
                f"{classes} outputs). Got dtype {y.dtype}{where}{hint}."
            )
        if len(output_shape) == 1 and y.ndim != 1:
            raise DataError(
                f"Classification labels must have shape (n_examples,) for a model with outputs of shape "
                f"{output_shape}. Got labels of shape {tuple(y.shape)}{where}."
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            bad = int(((y < 0) | (y >= classes)).sum())
            raise DataError(
                f"Labels must lie in [0, {classes - 1}] for a model with {classes} outputs. Got labels in "
                f"[{low}, {high}]{where}: {bad} label(s) out of range."
            )
    elif loss_name in ("mse", "bce_with_logits"):
        per_example = y[0].numel()
        expected = int(np.prod(output_shape)) if output_shape else 1
        if per_example != expected:
            hint = " For class labels use loss='cross_entropy'." if expected > 1 and per_example == 1 else ""
            raise DataError(
                f"The targets have {per_example} value(s) per example but the model has {expected} output(s) "
                f"per example{where}; loss '{loss_name}' compares them one to one.{hint}"
            )
        if y.is_complex() or (y.is_floating_point() and not bool(torch.isfinite(y).all())):
            raise DataError(f"The targets contain NaN, infinite or complex values{where}.")
        if loss_name == "bce_with_logits" and (bool((y < 0).any()) or bool((y > 1).any())):
            raise DataError(
                f"Targets of loss 'bce_with_logits' must lie in [0, 1]. Got values in "
                f"[{float(y.min()):g}, {float(y.max()):g}]{where}."
            )
