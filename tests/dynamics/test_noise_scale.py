import math

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.dynamics.noise_scale import gradient_noise_scale


def test_noise_scale_matches_a_per_example_autograd_loop():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    result = gradient_noise_scale(Problem(model, (x, y)), max_samples=24)
    grads = []
    for i in range(24):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    grads = torch.stack(grads)
    mean = grads.mean(0)
    trace = float(((grads - mean) ** 2).sum() / 23)
    unbiased = float(mean @ mean) - trace / 24
    # float64 sums in a different order: agreement to ~1e-12 relative
    assert result.trace_covariance == pytest.approx(trace, rel=1e-10)
    assert result.gradient_norm_squared == pytest.approx(unbiased, rel=1e-10)
    expected = trace / unbiased if unbiased > 0 else math.inf
    assert result.noise_scale == pytest.approx(expected, rel=1e-9)
    assert result.n_samples == 24
