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


def _previous_prior_loop(model, start, buffers, criterion, x, y, iterations, learning_rate, batch_size, generator):
    """The data-dependent prior's own loop before it moved onto deepscope.models.train (kept as the oracle)."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}
    optimizer = torch.optim.Adam(params.values(), lr=learning_rate)
    for _ in range(iterations):
        index = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator)
        with torch.enable_grad():
            output = torch.func.functional_call(model, (params, buffers), (x[index].clone(),), strict=False)
            loss = criterion(output, y[index])
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in params.items()}


@pytest.mark.parametrize("fixture_name", ["planted", "mlp", "cnn"])
@pytest.mark.parametrize("with_init", [True, False])
def test_the_data_prior_is_learned_by_the_one_trainer_bit_for_bit(planted, fixture_name, with_init):
    """The prior's training moved onto deepscope.models.train (steps, generator, mode="eval"): same
    weights bit for bit as its previous loop, and the shared random stream ends in the same state.

    It starts from ``initial_copy`` (init_state, else seeded reset_parameters) and runs in eval
    semantics on the initial copy's buffers (never the trained model's BatchNorm statistics, which
    saw the bound set)."""
    from deepscope.generalization.bounds.pac_bayes import _train_prior_mean
    from deepscope.guard import bitwise_equal, model_guard
    from deepscope.models.initial import initial_copy
    from deepscope.testing import make_fixture

    if fixture_name == "planted":
        model, init, (x, y), _ = planted
        x, y = x[:300], y[:300]
    else:
        fixture = make_fixture(fixture_name)
        model, init, x, y = fixture.model, fixture.problem().init_state, fixture.inputs, fixture.targets
    problem = Problem(model, (x, y), init_state=init if with_init else None)
    start = initial_copy(model, problem.init_state, seed=5).eval()
    expected_generator = torch.Generator().manual_seed(7)
    expected = _previous_prior_loop(
        start,
        dict(start.named_parameters()),
        dict(start.named_buffers()),
        problem.criterion,
        x,
        y.long(),
        25,
        1e-2,
        8,
        expected_generator,
    )
    generator = torch.Generator().manual_seed(7)
    state = torch.random.get_rng_state()
    with model_guard(model):
        got = _train_prior_mean(problem, x, y.long(), 25, 1e-2, 8, generator, 5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's global stream is untouched
    assert torch.equal(generator.get_state(), expected_generator.get_state())  # the posterior goes on from here
    assert list(got) == [name for name, _ in model.named_parameters()]
    for name, value in expected.items():
        assert bitwise_equal(got[name], value), name
    assert not all(bitwise_equal(got[k], v.detach()) for k, v in start.named_parameters())  # it did train


def test_the_data_prior_certifies_the_trained_network_not_the_prior(planted):
    """prior="data" (Dziugaite & Roy 2018): P is learned on a held-out part, Q is centred on the TRAINED weights.

    With no optimisation (iterations=0) and no prior training (prior_iterations=0), every term has a
    closed form: w_P = the initial weights, μ = the trained weights, σ = initial_sigma, σ_P the grid
    point nearest (in log scale) to sqrt((d σ² + ‖μ − w_P‖²)/d), KL(Q‖P) the sum of the Gaussian KLs,
    and the deterministic error is the trained network's error on the bound half of a seeded shuffle.
    Before the fix Q started at the prior's mean (here: the initial weights) and this test fails.
    """
    import numpy as np

    from deepscope.generalization.bounds.pac_bayes import DEFAULT_PRIOR_SIGMAS

    model, init, (x, y), _ = planted
    problem = Problem(model, (x, y), init_state=init)
    result = pac_bayes_certificate(
        problem, prior="data", prior_fraction=0.5, iterations=0, prior_iterations=0, mc_samples=2, seed=3
    )
    trained = {k: v.detach() for k, v in model.named_parameters()}
    for name, value in trained.items():  # the certified predictor is centred on the user's network
        assert torch.equal(result.posterior.mean[name], value), name
    mu = np.concatenate([v.double().numpy().ravel() for v in trained.values()])
    w_p = np.concatenate([init[k].double().numpy().ravel() for k in trained])
    sigma, d = 0.01, len(mu)
    learned = np.sqrt((d * sigma**2 + ((mu - w_p) ** 2).sum()) / d)
    sigma_p = min(DEFAULT_PRIOR_SIGMAS, key=lambda s: abs(np.log(s) - np.log(learned)))
    kl = (np.log(sigma_p / sigma) + (sigma**2 + (mu - w_p) ** 2) / (2 * sigma_p**2) - 0.5).sum()
    assert result.prior_sigma == sigma_p
    assert result.kl == pytest.approx(kl, rel=1e-6)  # float32 weights, float64 sums: ~1e-7 relative
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    bound = order[result.n_prior :]
    with torch.no_grad():
        error = float((model(x[bound]).argmax(1) != y[bound]).double().mean())
    assert result.n_prior == 1000 and result.deterministic_error == error


def test_posterior_start_prior_keeps_perez_ortiz_protocol(planted):
    """posterior_start="prior" (Pérez-Ortiz et al. 2021): Q starts at the learned prior's mean.

    With prior_iterations=0 the prior's mean is the initial weights and with iterations=0 Q stays
    where it started, so Q's mean must equal init_state exactly, and KL(Q‖P) has only the variance
    terms (μ = w_P): d·(log(σ_P/σ) + σ²/(2σ_P²) − 1/2) with σ_P the grid point nearest σ.
    """
    from deepscope.generalization.bounds.pac_bayes import DEFAULT_PRIOR_SIGMAS

    model, init, (x, y), _ = planted
    problem = Problem(model, (x, y), init_state=init)
    result = pac_bayes_certificate(
        problem,
        prior="data",
        posterior_start="prior",
        iterations=0,
        prior_iterations=0,
        mc_samples=2,
        seed=3,
    )
    assert result.posterior_start == "prior"
    for name, _ in model.named_parameters():
        assert torch.equal(result.posterior.mean[name], init[name].to(result.posterior.mean[name])), name
    d, sigma = sum(p.numel() for p in model.parameters()), 0.01
    sigma_p = min(DEFAULT_PRIOR_SIGMAS, key=lambda s: abs(math.log(s) - math.log(sigma)))
    kl = d * (math.log(sigma_p / sigma) + sigma**2 / (2 * sigma_p**2) - 0.5)
    assert result.kl == pytest.approx(kl, rel=1e-6, abs=1e-9)  # float32 weights summed in float64


@pytest.mark.parametrize(
    "options", [{"prior": "init"}, {"prior": "data", "objective": "scale"}, {"prior": "data", "posterior_start": "x"}]
)
def test_posterior_start_prior_needs_a_learned_data_prior(planted, options):
    model, init, (x, y), _ = planted
    problem = Problem(model, (x, y), init_state=init)
    options = {"posterior_start": "prior", **options}
    with pytest.raises(InvalidParameterError, match="posterior_start"):
        pac_bayes_certificate(problem, iterations=0, prior_iterations=0, mc_samples=2, **options)
