"""The Gaussian posterior: zero spread is the deterministic network, draws are seeded, the caller's
model is never used, and the per-example draws count errors exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepscope.errors import DataError, InvalidParameterError
from deepscope.generalization.bounds._stochastic import GaussianPosterior, StochasticError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))


def _data():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(50, 3, generator=generator), torch.randint(0, 4, (50,), generator=generator)


def _posterior(net, std):
    params = dict(net.named_parameters())
    return GaussianPosterior(net, params, {k: torch.full_like(v, std) for k, v in params.items()})


def test_zero_spread_is_the_deterministic_network():
    net = _net()
    x, y = _data()
    posterior = _posterior(net, 0.0)
    with torch.no_grad():
        predicted = net(x).argmax(1)
    wrong = int((predicted != y).sum())
    assert torch.equal(posterior.predict(x), predicted)
    generator = torch.Generator().manual_seed(0)
    assert posterior.errors_per_sample(x, y, 3, generator, batch_size=7).tolist() == [wrong / 50] * 3
    assert posterior.errors_per_example_draws(x, y, 2, generator, max_floats=200) == (2 * wrong, 100)
    result = posterior.stochastic_error((x, y), samples=4)
    assert isinstance(result, StochasticError) and result.error == wrong / 50 and result.standard_error == 0.0
    assert (result.samples, result.n, result.forward_passes) == (4, 50, 200)


def test_draws_are_seeded_and_spread_as_asked():
    posterior = _posterior(_net(), 0.5)
    a, b = posterior.sample(torch.Generator().manual_seed(3)), posterior.sample(torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    draws = torch.stack([posterior.sample(torch.Generator().manual_seed(s))["0.weight"] for s in range(400)])
    assert float((draws - posterior.mean["0.weight"]).std()) == pytest.approx(0.5, rel=0.05)  # 9600 draws: se ~0.7%
    x, y = _data()
    first = posterior.stochastic_error((x, y), samples=5, seed=2)
    assert first == posterior.stochastic_error((x, y), samples=5, seed=2) and first.standard_error > 0
    assert math.isnan(posterior.stochastic_error((x, y), samples=1).standard_error)
    assert "GaussianPosterior(" in repr(posterior) and "mean std 0.5" in repr(posterior)


def test_the_callers_model_and_hooks_are_not_used():
    net = _net()
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    posterior = _posterior(net, 0.1)
    posterior.predict(_data()[0])
    assert calls == [] and posterior.model is not net
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()) and net.training


def test_bad_data():
    posterior = _posterior(_net(), 0.1)
    x, y = _data()
    with pytest.raises(InvalidParameterError, match="'data' parameter of GaussianPosterior.stochastic_error"):
        posterior.stochastic_error(x)
    with pytest.raises(DataError, match="Got 50 and 10"):
        posterior.stochastic_error((x, y[:10]))
    with pytest.raises(InvalidParameterError, match="'samples'"):
        posterior.stochastic_error((x, y), samples=0)
