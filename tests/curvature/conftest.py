"""Small float64 problems shared by the curvature tests (float64 so that oracles agree to 1e-10)."""

import pytest
import torch
from torch import nn

from deepscope import Problem


def tiny_classifier(n: int = 48, seed: int = 0, batch_size: int = 256) -> Problem:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=generator, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    return Problem(model, (x, y), batch_size=batch_size)


def least_squares(n: int = 40, d: int = 6, seed: int = 0, batch_size: int = 256) -> tuple[Problem, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64) * torch.linspace(0.3, 3.0, d, dtype=torch.float64)
    y = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    # mse = mean (xᵀw − y)², so the Hessian is 2 XᵀX / n exactly.
    return Problem(model, (x, y), loss="mse", batch_size=batch_size), 2 * x.T @ x / n


@pytest.fixture
def classifier_problem() -> Problem:
    return tiny_classifier()
