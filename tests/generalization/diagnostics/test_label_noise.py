"""Label noise: exact corruption of a chosen share of labels, and the sensitivity of the fit to it."""

import torch

from deepscope.generalization.diagnostics import label_noise_sensitivity
from deepscope.generalization.diagnostics.label_noise import corrupt_labels
from tests.generalization.diagnostics.conftest import blob_problem


def test_corrupt_labels_changes_exactly_that_many():
    y = torch.randint(0, 4, (100,))
    noisy = corrupt_labels(y, 0.3, 4, torch.Generator().manual_seed(0))
    assert int((noisy != y).sum()) == 30  # every chosen label moves to a different class
    assert int(noisy.min()) >= 0 and int(noisy.max()) <= 3


def test_label_noise_makes_the_training_set_harder_to_fit():
    noise = label_noise_sensitivity(blob_problem(), levels=(0.0, 0.5), epochs=30, lr=0.01)
    clean, noisy = noise.rows()
    assert noisy["train_accuracy"] < clean["train_accuracy"]  # the corrupted half is hard to fit
