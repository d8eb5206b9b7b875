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


class _Wrapped(nn.Module):
    """The same function behind named inputs, a dict output and a branch on the inputs' values (vmap refuses)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, mask):
        if bool((mask == 0).all()):  # data-dependent control flow, as HF models' attention-mask checks
            x = x * 0
        return {"logits": self.net(x * mask)}


def test_named_inputs_dict_output_and_untraceable_models_give_the_same_noise_scale():
    # oracle: the plain float64 network's result; the wrapper computes the same loss per example, run one
    # example at a time (vmap refuses its branch): only the order of float64 sums differs (1e-10 relative)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=generator)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    plain = gradient_noise_scale(Problem(net, (x, y)), max_samples=24)
    inputs = {"x": x, "mask": torch.ones(x.shape, dtype=torch.long)}
    problem = Problem(_Wrapped(net), (inputs, y), output_fn=lambda out: out["logits"])
    result = gradient_noise_scale(problem, max_samples=24)
    assert result.trace_covariance == pytest.approx(plain.trace_covariance, rel=1e-10)
    assert result.gradient_norm_squared == pytest.approx(plain.gradient_norm_squared, rel=1e-10)
    assert result.n_samples == 24
