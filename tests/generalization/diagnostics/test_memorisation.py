"""The memorisation probe: a wide net fits random labels, later than true ones (Zhang et al., 2017)."""

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.errors import UnsupportedModelError
from deepscope.generalization.diagnostics import memorisation_probe
from tests.generalization.diagnostics.conftest import blob_problem


def test_memorisation_of_random_labels():
    result = memorisation_probe(blob_problem(width=256), epochs=200, lr=0.01, batch_size=16, target_accuracy=1.0)
    assert result.random_epochs_to_fit is not None and result.random_final_accuracy == 1.0
    assert result.true_epochs_to_fit is not None and result.true_epochs_to_fit <= result.random_epochs_to_fit
    assert result.random_curve[0] < 0.7 and "memorise" in result.summary()


def test_memorisation_needs_a_classifier():
    with pytest.raises(UnsupportedModelError, match="classification"):
        memorisation_probe(Problem(nn.Linear(2, 1), (torch.randn(10, 2), torch.randn(10, 1)), loss="mse"))
