"""Shared data checks: label validation, stratified split, standardisation with train statistics."""

import numpy as np
import pytest
import torch

from deepscope.data._checks import (
    as_inputs,
    as_labels,
    check_targets_fit,
    infer_task,
    standardise,
    stratified_split,
    subsample,
)
from deepscope.errors import DataError


def test_stratified_split_keeps_class_proportions_and_partitions():
    labels = np.repeat([0, 1, 2], [40, 20, 8])
    train, test = stratified_split(labels, len(labels), 0.25, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    # exact per-class counts: round(n_c * 0.25)
    assert np.bincount(labels[test]).tolist() == [10, 5, 2]
    again = stratified_split(labels, len(labels), 0.25, seed=3)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(stratified_split(labels, len(labels), 0.25, seed=4)[1], test)


def test_stratified_split_never_empties_a_class_from_training():
    labels = np.array([0, 0, 1])
    train, _ = stratified_split(labels, 3, 0.9, seed=0)
    assert set(labels[train].tolist()) == {0, 1}


def test_tiny_data_still_gets_a_test_example():
    labels = np.array([0, 1, 0, 1])  # round(2 * 0.25) = 0 per class
    train, test = stratified_split(labels, 4, 0.25, seed=0)
    assert len(test) == 1 and set(labels[train].tolist()) == {0, 1}


def test_subsample_has_exact_size():
    labels = np.repeat([0, 1, 2], [33, 33, 34])
    for size in (7, 10, 50, 99):
        chosen = subsample(labels, 100, size, seed=1)
        assert len(chosen) == size and len(np.unique(chosen)) == size


def test_standardise_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    x_train = rng.normal(3.0, 2.0, size=(50, 4))
    x_test = rng.normal(100.0, 1.0, size=(10, 4))
    train, test, stats = standardise(x_train, x_test)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-5)  # float32 rounding of O(1) numbers
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(test, (x_test - x_train.mean(0)) / x_train.std(0), rtol=1e-5)
    assert stats["mean"] == pytest.approx(x_train.mean(0).tolist())


def test_labels_must_be_zero_based_contiguous_integers():
    with pytest.raises(DataError, match="0..C-1.*class\\(es\\) 0 never occur"):
        as_labels(np.array([1, 2, 3, 1]), "src", "classification")
    with pytest.raises(DataError, match="range over -1..1"):
        as_labels(np.array([-1, 0, 1]), "src", "classification")
    with pytest.raises(DataError, match="non-integer"):
        as_labels(np.array([0.5, 1.0]), "src", "classification")
    with pytest.raises(DataError, match="0..1; the train labels range over 0..2"):
        as_labels(np.array([0, 1, 2]), "src", "classification", num_classes=2)
    y, classes = as_labels(np.array([0.0, 2.0, 2.0]), "src", "classification", num_classes=4)
    assert classes == 4 and y.dtype == torch.int64


def test_inputs_reject_nan_empty_and_non_numeric():
    with pytest.raises(DataError, match="NaN values in 1 example\\(s\\), first at row 1"):
        as_inputs(np.array([[0.0, 1.0], [np.nan, 1.0]]), "src")
    with pytest.raises(DataError, match="infinite"):
        as_inputs(np.array([[np.inf, 1.0]]), "src")
    with pytest.raises(DataError, match="is empty \\(no examples\\)"):
        as_inputs(np.zeros((0, 3)), "src")
    with pytest.raises(DataError, match="numeric"):
        as_inputs(np.array([["a", "b"]]), "src")
    with pytest.raises(DataError, match="shape \\(n_examples, \\*features\\)"):
        as_inputs(np.zeros(5), "src")


def test_infer_task():
    assert infer_task(np.array([0, 1, 1])) == "classification"
    assert infer_task(np.array([0.0, 1.0])) == "classification"
    assert infer_task(np.array([0.5, 1.0])) == "regression"
    assert infer_task(np.zeros((4, 2))) == "regression"


# ---------------------------------------------------------------------------------- check_targets_fit


def test_check_targets_fit_classification_labels():
    check_targets_fit("cross_entropy", (3,), torch.tensor([0, 2, 1]))
    with pytest.raises(DataError, match=r"Labels must lie in \[0, 2\].*Got labels in \[0, 3\] \(here\): 1 label"):
        check_targets_fit("nll", (3,), torch.tensor([0, 3, 1]), " (here)")
    with pytest.raises(DataError, match=r"must be integers \(class indices 0..2.*torch.float64.*loss='mse'"):
        check_targets_fit("cross_entropy", (3,), torch.tensor([0.0, 1.0], dtype=torch.float64))
    with pytest.raises(DataError, match=r"must be integers.*torch.bool"):
        check_targets_fit("cross_entropy", (2,), torch.tensor([True, False]))


def test_check_targets_fit_regression_targets():
    check_targets_fit("mse", (1,), torch.randn(5))
    check_targets_fit("mse", (2, 2), torch.randn(5, 4))  # compared element-wise after reshaping
    with pytest.raises(DataError, match=r"2 value\(s\) per example but the model has 1 output"):
        check_targets_fit("mse", (1,), torch.randn(5, 2))
    with pytest.raises(DataError, match=r"NaN, infinite"):
        check_targets_fit("mse", (1,), torch.tensor([0.0, float("inf")]))
    with pytest.raises(DataError, match=r"\[0, 1\]. Got values in \[-1, 0\]"):
        check_targets_fit("bce_with_logits", (1,), torch.tensor([0.0, -1.0]))


def test_check_targets_fit_leaves_custom_losses_and_empty_targets_alone():
    check_targets_fit("my_loss", (3,), torch.tensor([7.5]))
    check_targets_fit("cross_entropy", (3,), torch.zeros(0, dtype=torch.long))
