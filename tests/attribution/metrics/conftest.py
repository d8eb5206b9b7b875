"""Small float64 models for the metric tests (float64 so that oracle tolerances can be tight)."""

import pytest
import torch
from torch import nn


def small_cnn() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(48, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    ).double()


@pytest.fixture
def cnn_and_images():
    generator = torch.Generator().manual_seed(12)
    return small_cnn(), torch.rand(5, 1, 8, 8, generator=generator, dtype=torch.float64)


@pytest.fixture
def linear_model():
    torch.manual_seed(13)
    return nn.Linear(6, 3).double()
