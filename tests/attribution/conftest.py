"""Small float64 models shared by the attribution tests (float64 so oracle tolerances can be tight)."""

import pytest
import torch
from torch import nn


def relu_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 3),
    ).double()


def relu_mlp(features: int = 5, classes: int = 3, bias: bool = True) -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Linear(features, 8, bias=bias),
        nn.ReLU(),
        nn.Linear(8, 6, bias=bias),
        nn.ReLU(),
        nn.Linear(6, classes, bias=bias),
    ).double()


@pytest.fixture
def cnn_and_images():
    generator = torch.Generator().manual_seed(3)
    return relu_cnn(), torch.rand(4, 1, 8, 8, generator=generator, dtype=torch.float64)


@pytest.fixture
def mlp_and_rows():
    generator = torch.Generator().manual_seed(4)
    return relu_mlp(), torch.randn(6, 5, generator=generator, dtype=torch.float64)


@pytest.fixture
def make_relu_mlp():
    return relu_mlp
