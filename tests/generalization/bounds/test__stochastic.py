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


class _Branching(nn.Module):
    """The same function as its inner net, but its forward branches on the input's values (vmap refuses)."""

    def __init__(self, net, dict_out=False):
        super().__init__()
        self.net, self.dict_out = net, dict_out

    def forward(self, x):
        if bool((x == 0).all()):  # data-dependent control flow, as HF models' attention-mask checks
            x = x + 0
        out = self.net(x)
        return {"logits": out} if self.dict_out else out


def _draws(net, output_fn=None):
    x, y = _data()
    params = dict(net.named_parameters())
    posterior = GaussianPosterior(
        net, params, {k: torch.full_like(v, 0.3) for k, v in params.items()}, output_fn=output_fn
    )
    return posterior.errors_per_example_draws(x, y, 3, torch.Generator().manual_seed(5), max_floats=2000)


def test_a_model_vmap_cannot_trace_gets_the_same_per_example_draws_one_at_a_time():
    # oracle: the vectorised draws of the plain net; the branching wrapper computes the same function on the
    # same draws (same generator, same chunks), so the error count must be identical, not merely close
    net = _net()
    expected = _draws(net)
    assert _draws(_Branching(net)) == expected
    assert _draws(_Branching(net, dict_out=True), output_fn=lambda out: out["logits"]) == expected


def test_output_fn_and_token_ids_reach_the_network_unchanged():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(6, 4), nn.Flatten(), nn.Linear(12, 3))
    ids = torch.randint(0, 6, (20, 3), generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 3, (20,), generator=torch.Generator().manual_seed(3))
    params = dict(net.named_parameters())
    zero = {k: torch.zeros_like(v) for k, v in params.items()}
    picked = GaussianPosterior(
        _Branching(net, dict_out=True),
        {f"net.{k}": v for k, v in params.items()},
        {f"net.{k}": v for k, v in zero.items()},
        output_fn=lambda out: out["logits"],
    )
    with torch.no_grad():
        wrong = int((net(ids).argmax(1) != y).sum())
    result = picked.stochastic_error((ids, y), samples=2)  # ids stay integers (a float cast fails in Embedding)
    assert result.error == wrong / 20 and result.n == 20
    assert picked.errors_per_example_draws(ids, y, 2, torch.Generator().manual_seed(0)) == (2 * wrong, 40)
