"""Shared by the diagnostics' tests: three well-separated Gaussian blobs and a small MLP problem on them."""

import torch
from torch import nn

from deepscope import Problem


def blobs(n, seed):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=generator)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return torch.randn(n, 2, generator=generator) * 0.6 + centres[y], y


def blob_problem(width=32, dropout=False):
    torch.manual_seed(0)
    layers = [nn.Linear(2, width), nn.ReLU()] + ([nn.Dropout(0.1)] if dropout else []) + [nn.Linear(width, 3)]
    model = nn.Sequential(*layers)
    return Problem(model, blobs(64, 0), blobs(200, 1), init_state={k: v.clone() for k, v in model.state_dict().items()})
