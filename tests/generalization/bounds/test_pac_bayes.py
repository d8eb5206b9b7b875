"""PAC-Bayes certificate: kl pieces against direct formulas, validity in a planted case, monotone in delta."""

import math

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.errors import DataError, InvalidParameterError, UnsupportedModelError
from deepscope.generalization.bounds.kl import kl_inverse_upper
from deepscope.generalization.bounds.pac_bayes import gaussian_kl, pac_bayes_certificate


def _blobs(n, generator):
    y = torch.randint(0, 2, (n,), generator=generator)
    x = torch.randn(n, 2, generator=generator) * 0.7 + (y[:, None] * 2.0 - 1.0) * torch.tensor([1.0, 0.5])
    return x, y


@pytest.fixture(scope="module")
def planted():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = _blobs(2000, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, init, (x, y), _blobs(5000, generator)


def test_gaussian_kl_matches_torch_distributions():
    mean_q = {"a": torch.randn(5, dtype=torch.float64)}
    std_q = {"a": torch.rand(5, dtype=torch.float64) + 0.1}
    mean_p = {"a": torch.randn(5, dtype=torch.float64)}
    q = torch.distributions.Normal(mean_q["a"], std_q["a"])
    p = torch.distributions.Normal(mean_p["a"], torch.full((5,), 0.3, dtype=torch.float64))
    expected = float(torch.distributions.kl_divergence(q, p).sum())
    assert float(gaussian_kl(mean_q, std_q, mean_p, torch.tensor(0.3, dtype=torch.float64))) == pytest.approx(expected)


def test_certificate_terms_and_validity(planted):
    model, init, train, fresh = planted
    result = pac_bayes_certificate(Problem(model, train, init_state=init), iterations=150, mc_samples=3)
    # the final value is the two kl inversions of the reported terms (direct formulas)
    assert result.empirical_risk_bound == pytest.approx(
        kl_inverse_upper(result.empirical_risk_mc, math.log(2 / result.delta_mc) / result.mc_draws)
    )
    expected_kl_term = (
        result.kl + math.log(2 * math.sqrt(result.n_bound) * result.grid_size / result.delta)
    ) / result.n_bound
    assert result.kl_term == pytest.approx(expected_kl_term)
    assert result.certificate == pytest.approx(kl_inverse_upper(result.empirical_risk_bound, result.kl_term))
    assert result.confidence == pytest.approx(0.94)
    assert result.mc_draws == result.mc_samples * result.n_bound
    # validity in the planted case: the certificate is above the stochastic error on fresh data
    test = result.stochastic_error(fresh, samples=20)
    assert test.samples == 20 and test.n == 5000
    assert result.certificate >= test.error
    assert result.certificate < 0.5  # and it says something (blobs are ~93% separable)
    assert result.posterior.sample()["0.weight"].shape == (16, 2)
    assert "posterior" in result.to_dict()


def test_data_dependent_prior_and_objectives(planted):
    model, init, train, fresh = planted
    problem = Problem(model, train, init_state=init)
    for objective in ("f-classic", "scale"):
        result = pac_bayes_certificate(
            problem, objective=objective, prior="data", iterations=40, prior_iterations=40, mc_samples=10
        )
        assert result.n_prior == 1000 and result.n_bound == 1000
        assert result.certificate >= result.stochastic_error(fresh, samples=10).error


def test_monotone_in_delta(planted):
    model, init, train, _ = planted
    problem = Problem(model, train, init_state=init)
    # no optimisation: the posterior and its Monte-Carlo draws are the same for every delta
    values = [
        pac_bayes_certificate(problem, delta, iterations=0, mc_samples=2).certificate for delta in (0.01, 0.05, 0.2)
    ]
    assert values[0] > values[1] > values[2]


def test_bad_input(planted):
    model, init, train, _ = planted
    with pytest.raises(InvalidParameterError, match="delta"):
        pac_bayes_certificate(Problem(model, train, init_state=init), 1.5)
    with pytest.raises(DataError, match="init_state"):
        pac_bayes_certificate(Problem(model, train), iterations=0)
    with pytest.raises(UnsupportedModelError, match="classification"):
        pac_bayes_certificate(Problem(nn.Linear(2, 1), (train[0], torch.randn(len(train[0]), 1)), loss="mse"))


def test_per_example_draws_match_network_draws(planted):
    from deepscope.generalization.bounds._stochastic import GaussianPosterior

    model, _, (x, y), _ = planted
    mean = {k: v.detach() for k, v in model.named_parameters()}
    exact = GaussianPosterior(model, mean, {k: torch.zeros_like(v) for k, v in mean.items()})
    wrong, draws = exact.errors_per_example_draws(x, y, 2, torch.Generator().manual_seed(0), max_floats=5000)
    with torch.no_grad():
        deterministic = int((model(x).argmax(1) != y).sum())
    assert (wrong, draws) == (2 * deterministic, 2 * len(x))  # zero noise: every draw is the trained network
    noisy = GaussianPosterior(model, mean, {k: torch.full_like(v, 0.3) for k, v in mean.items()})
    wrong, draws = noisy.errors_per_example_draws(x, y, 5, torch.Generator().manual_seed(1))
    network = noisy.stochastic_error((x, y), samples=200, seed=2)
    # both estimate the same stochastic error: 10,000 per-example draws (s.e. ~0.003) vs 200 networks
    assert wrong / draws == pytest.approx(network.error, abs=4 * network.standard_error + 0.01)


def test_the_data_prior_starts_from_the_shared_initial_copy():
    """Pinned when _fresh_init moved onto deepscope.models.initial.initial_copy: same weights, bit for bit."""
    import copy as copy_module

    from deepscope.generalization.bounds.pac_bayes import _fresh_init
    from deepscope.guard import bitwise_equal
    from deepscope.testing import make_fixture

    fixture = make_fixture("cnn")
    problem = Problem(fixture.model, (fixture.inputs, fixture.targets))
    reference = copy_module.deepcopy(fixture.model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        for module in reference.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    state = torch.random.get_rng_state()
    start = _fresh_init(problem, 11)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's stream is untouched
    assert list(start) == [name for name, _ in fixture.model.named_parameters()]
    for name, value in reference.named_parameters():
        assert bitwise_equal(start[name], value.detach()), name
    with_init = fixture.problem()
    assert all(start is with_init.init_state[k] for k, start in _fresh_init(with_init, 11).items())
