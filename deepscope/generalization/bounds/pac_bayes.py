"""A PAC-Bayes risk certificate for a trained classifier (Pérez-Ortiz et al. 2021; Dziugaite & Roy 2017).

The certified predictor is a Gaussian ``Q = N(μ, diag σ²)`` over the weights, started at the trained
weights (with either prior: it is the user's network that is certified). The prior is
``P = N(w_P, σ_P² I)`` with ``w_P`` the weights at initialisation (``prior="init"``) or weights trained
from there on a held-out part of the training set (``prior="data"``, Dziugaite & Roy 2018; Dziugaite et
al. 2021: the prior may use any data the bound does not, the posterior may depend on all of it); the
bound then uses only the remaining ``n`` examples. ``σ_P`` is the KL-minimising value
``σ_P² = (Σ σ_i² + ‖μ − w_P‖²)/d`` for the current Q, finally rounded (in log scale) to the nearest
point of a grid of ``G`` values, paid for by a union bound (δ/G). With probability ≥ 1 − δ − δ' over
the bound set and the Monte-Carlo draws (Maurer 2004; Langford & Caruana 2001; Hoeffding 1963 for the N independent draws):

    L̂⁺ = kl⁻¹(L̂_S, log(2/δ')/N)            (N = n·S draws: each example gets its own weight draw, S passes)
    L(Q) ≤ kl⁻¹(L̂⁺, (KL(Q‖P) + log(2√n/(δ/G))) / n)

with ``KL(Q‖P) = Σ_i [log(σ_P/σ_i) + (σ_i² + (μ_i − w_P,i)²)/(2σ_P²) − ½]``. Q is trained on a deep
copy (reparametrised: ``w = μ + σ ⊙ ε``, learning log σ) by minimising a PAC-Bayes objective with a
bounded cross-entropy surrogate ``−log max(p_y, p_min)/log(1/p_min)``:
``f-quad = (√(L̂ + K/2n) + √(K/2n))²`` or ``f-classic = L̂ + √(K/2n)``, ``K = KL + log(2√n/δ)``;
``objective="scale"`` keeps μ at the trained weights and learns only one noise scale (post-hoc).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from deepscope import _inputs
from deepscope._validation import check_choice, check_float, check_float_sequence, check_int, check_probability
from deepscope.errors import DataError, UnsupportedModelError, invalid_parameter
from deepscope.generalization.bounds._stochastic import GaussianPosterior
from deepscope.generalization.bounds.kl import kl_inverse_upper
from deepscope.guard import current_guard_report
from deepscope.models.initial import initial_copy
from deepscope.models.trainer import train
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["PacBayesCertificate", "pac_bayes_certificate", "gaussian_kl", "DEFAULT_PRIOR_SIGMAS"]

DEFAULT_PRIOR_SIGMAS = tuple(10.0 ** (-4.0 + 0.25 * j) for j in range(17))  # 1e-4 ... 1, G = 17


def gaussian_kl(
    mean_q: dict[str, torch.Tensor], std_q: dict[str, torch.Tensor], mean_p: dict[str, torch.Tensor], std_p
) -> torch.Tensor:
    """``KL(N(μ_q, diag σ_q²) ‖ N(μ_p, σ_p² I))`` summed over all parameters (differentiable)."""
    total = 0.0
    for name, mu in mean_q.items():
        var_ratio = (std_q[name] / std_p) ** 2
        total = total + 0.5 * (var_ratio + (mu - mean_p[name]) ** 2 / std_p**2 - 1.0 - torch.log(var_ratio)).sum()
    return total


@dataclasses.dataclass(frozen=True)
class PacBayesCertificate(Result):
    """A certificate on the 0-1 error of a Gaussian stochastic predictor, with every term.

    Attributes:
        certificate: the risk bound, holding with probability at least ``confidence``.
        confidence: 1 − delta − delta_mc.
        empirical_risk_mc: L̂_S, the 0-1 error on the bound set with an independent weight draw for
            every example in each of ``mc_samples`` passes (``mc_draws`` = n × mc_samples draws).
        empirical_risk_bound: L̂⁺ = kl⁻¹(L̂_S, log(2/δ')/mc_draws).
        kl: KL(Q‖P) in nats; kl_term: (KL + log(2√n/(δ/G)))/n.
        deterministic_error: 0-1 error of the mean weights on the bound set (not certified).
        n_bound, n_prior: examples used by the bound and to learn the prior.
        prior_sigma, grid_size: σ_P after rounding, and G.
        objective, prior, iterations, mc_samples, forward_passes: how it was obtained.
        posterior_start: "trained" (Q started at the user's weights) or "prior" (at the learned prior's mean).
        posterior: the certified stochastic predictor (``.stochastic_error((X, y))``, ``.sample()``).
    """

    certificate: float
    confidence: float
    delta: float
    delta_mc: float
    empirical_risk_mc: float
    empirical_risk_bound: float
    kl: float
    kl_term: float
    deterministic_error: float
    n_bound: int
    n_prior: int
    prior_sigma: float
    grid_size: int
    objective: str
    prior: str
    iterations: int
    mc_samples: int
    mc_draws: int
    forward_passes: int
    posterior: GaussianPosterior
    note: str = ""
    posterior_start: str = "trained"

    def to_dict(self):
        data = super().to_dict()
        data["posterior"] = repr(self.posterior)
        return data

    def stochastic_error(self, data, samples: int = 100, seed: int = 0):
        """Monte-Carlo 0-1 error of the certified predictor on other data ``(X, y)``."""
        return self.posterior.stochastic_error(data, samples=samples, seed=seed)

    def summary(self) -> str:
        return (
            f"With probability {self.confidence:.1%}, the stochastic predictor's error is at most "
            f"{self.certificate:.4f} (Monte-Carlo training error {self.empirical_risk_mc:.4f}, KL {self.kl:.1f} nats, "
            f"n = {self.n_bound})."
        )


def _best_prior_sigma(mean, std, prior_mean) -> torch.Tensor:
    """The σ_P minimising KL(Q‖N(w_P, σ_P² I)): ``σ_P² = (Σ σ_i² + ‖μ − w_P‖²) / d``."""
    total = sum((std[k].double() ** 2 + (mean[k].double() - prior_mean[k].double()) ** 2).sum() for k in mean)
    count = sum(v.numel() for v in mean.values())
    return torch.sqrt(total / count)


def _bounded_cross_entropy(logits: torch.Tensor, y: torch.Tensor, p_min: float) -> torch.Tensor:
    log_p = torch.log_softmax(logits, dim=-1).gather(1, y[:, None]).squeeze(1)
    return -(log_p.clamp(min=math.log(p_min))).mean() / math.log(1.0 / p_min)


def _objective(kind: str, loss: torch.Tensor, kl: torch.Tensor, n: int, delta: float) -> torch.Tensor:
    k = (kl + math.log(2.0 * math.sqrt(n) / delta)) / (2.0 * n)
    if kind == "f-classic":
        return loss + torch.sqrt(k)
    return (torch.sqrt(loss + k) + torch.sqrt(k)) ** 2  # f-quad, also used for "scale"


def _train_prior_mean(problem: Problem, x, y, iterations, learning_rate, batch_size, generator, seed):
    """ERM on the prior set only (a data-dependent prior never sees the bound set), by deepscope's one loop.

    From the model's initial weights (:func:`deepscope.models.initial.initial_copy`: ``init_state``,
    else a seeded re-initialisation), :func:`deepscope.models.train` takes ``iterations`` Adam steps on
    the problem's loss, on mini-batches drawn with replacement from ``generator`` (whose stream the
    posterior's optimisation continues), in eval semantics like the rest of the analysis.
    Returns the prior's mean, by parameter name.
    """
    run = train(
        initial_copy(problem.model, problem.init_state, seed=seed),
        ((x, y), None),
        steps=iterations,
        lr=learning_rate,
        optimizer="adam",
        batch_size=batch_size,
        loss=problem.criterion,
        generator=generator,
        mode="eval",
        seed=seed,
        output_fn=problem.output_fn,
    )
    return {k: v.detach() for k, v in run.model.named_parameters()}


@analysis(
    takes="problem",
    family="generalization",
    fixture="mlp",
    example_kwargs={"iterations": 3, "mc_samples": 3},
)
def pac_bayes_certificate(
    problem: Problem,
    delta: float = 0.05,
    *,
    objective: str = "f-quad",
    prior: str = "init",
    posterior_start: str = "trained",
    prior_fraction: float = 0.5,
    prior_sigmas: Sequence[float] = DEFAULT_PRIOR_SIGMAS,
    initial_sigma: float = 0.01,
    delta_mc: float = 0.01,
    mc_samples: int = 10,
    iterations: int = 500,
    prior_iterations: int = 500,
    learning_rate: float = 1e-3,
    sigma_learning_rate: float = 1e-2,
    prior_learning_rate: float = 1e-3,
    batch_size: int = 256,
    p_min: float = 1e-4,
    max_samples: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PacBayesCertificate:
    """Certify the 0-1 error of a Gaussian stochastic version of the trained classifier.

    Args:
        problem: a :class:`deepscope.Problem` with a classification loss (the bound uses its
            training set; give ``init_state`` for ``prior="init"``).
        delta: failure probability of the PAC-Bayes bound, in (0, 1).
        objective: "f-quad", "f-classic" or "scale" (see module docstring).
        prior: "init" (prior centred at the initial weights) or "data" (learned from the initial
            weights on the first ``prior_fraction`` of a seeded shuffle of the training set; the
            bound then uses the rest).
        posterior_start: where Q's mean starts. "trained" (default): at the trained weights, with
            either prior, so the certificate is about the user's network (Dziugaite & Roy 2018).
            "prior" (only with ``prior="data"``): at the learned prior's mean, as in Pérez-Ortiz et
            al. (2021) — usually much tighter, but the certified predictor is then a network
            trained from the data-dependent prior on the bound set, not the user's weights.
        prior_sigmas: the grid of prior standard deviations (G values, union bound).
        initial_sigma: the posterior's starting standard deviation.
        delta_mc: failure probability of the Monte-Carlo bound on the empirical risk.
        mc_samples: passes over the bound set for the empirical risk; in each pass every example
            is classified by its own weight draw (n × mc_samples independent draws in all).
        iterations: optimisation steps of the posterior (0: no optimisation, σ = initial_sigma).
        prior_iterations: steps of the data-dependent prior's training.
        learning_rate: SGD (momentum 0.95) step size for the posterior means.
        sigma_learning_rate: Adam's step size for the posterior log-stds.
        prior_learning_rate: Adam's step size when learning the data-dependent prior.
        batch_size: the minibatch size.
        p_min: floor of the bounded cross-entropy surrogate.
        max_samples: use at most this many training examples.
        seed: seed of the shuffle, minibatches and weight samples.
        progress: show a tqdm bar during optimisation.

    Returns:
        :class:`PacBayesCertificate` with the certificate, every term and the posterior.
    """
    delta = check_probability(delta, "delta", "pac_bayes_certificate")
    delta_mc = check_probability(delta_mc, "delta_mc", "pac_bayes_certificate")
    check_choice(objective, "objective", "pac_bayes_certificate", ("f-quad", "f-classic", "scale"))
    check_choice(prior, "prior", "pac_bayes_certificate", ("init", "data"))
    check_choice(posterior_start, "posterior_start", "pac_bayes_certificate", ("trained", "prior"))
    if posterior_start == "prior" and (prior != "data" or objective == "scale"):
        raise invalid_parameter(
            "posterior_start",
            "pac_bayes_certificate",
            "'trained' unless prior='data' with a learned mean (objective 'f-quad' or 'f-classic')",
            posterior_start,
        )
    prior_fraction = check_float(prior_fraction, "prior_fraction", "pac_bayes_certificate", minimum=0.0, maximum=1.0)
    initial_sigma = check_float(
        initial_sigma, "initial_sigma", "pac_bayes_certificate", minimum=0.0, strict_minimum=True
    )
    mc_samples = check_int(mc_samples, "mc_samples", "pac_bayes_certificate", minimum=1)
    iterations = check_int(iterations, "iterations", "pac_bayes_certificate", minimum=0)
    owner = "pac_bayes_certificate"
    prior_iterations = check_int(prior_iterations, "prior_iterations", owner, minimum=0)
    for name, rate in (
        ("learning_rate", learning_rate),
        ("sigma_learning_rate", sigma_learning_rate),
        ("prior_learning_rate", prior_learning_rate),
    ):  # a negative or NaN rate was Adam's/SGD's raw ValueError
        check_float(rate, name, owner, minimum=0.0, strict_minimum=True)
    batch_size = check_int(batch_size, "batch_size", owner, minimum=1)
    p_min = check_float(p_min, "p_min", owner, minimum=0.0, strict_minimum=True)  # log(p_min): 0 was a domain error
    if p_min >= 1.0:
        raise invalid_parameter("p_min", owner, "a finite float in (0, 1)", p_min)
    grid = sorted(check_float_sequence(prior_sigmas, "prior_sigmas", owner, minimum=0.0))
    if grid[0] <= 0:
        raise DataError("prior_sigmas must be a non-empty sequence of positive standard deviations.")
    if problem.num_classes is None:
        raise UnsupportedModelError(
            f"A PAC-Bayes certificate on the 0-1 error needs a classification loss. Got {problem.loss_name!r}."
        )
    if prior == "init" and problem.init_state is None:
        raise DataError(
            "prior='init' needs the initial weights: build the Problem with init_state=..., or use prior='data'."
        )

    generator = torch.Generator(device="cpu").manual_seed(seed)
    x, y = problem.tensors("train", max_samples=max_samples)
    y = y.long()
    n_prior = 0
    if prior == "data":
        order = torch.randperm(len(y), generator=generator).to(y.device)
        n_prior = int(round(prior_fraction * len(y)))
        if n_prior < 1 or n_prior >= len(y):
            raise DataError(f"prior_fraction={prior_fraction} leaves no examples for the prior or for the bound.")
        x_prior, y_prior = _inputs.rows(x, order[:n_prior]), y[order[:n_prior]]
        x, y = _inputs.rows(x, order[n_prior:]), y[order[n_prior:]]
        prior_mean = _train_prior_mean(
            problem, x_prior, y_prior, prior_iterations, prior_learning_rate, batch_size, generator, seed
        )
    else:
        prior_mean = {k: problem.init_state[k].detach().to(v) for k, v in problem.parameters(False).items()}
    n = len(y)
    # By default Q starts at the trained network with either prior (Dziugaite & Roy 2018): the certificate
    # is about the user's model. posterior_start="prior" keeps Pérez-Ortiz et al.'s protocol, where Q
    # starts at the learned prior's mean (a network fitted to the bound set from the prior, not the user's).
    trained = problem.parameters(trainable_only=False)
    if posterior_start == "prior":
        trained = {k: prior_mean[k] if k in prior_mean else v for k, v in trained.items()}
    log_start = math.log(initial_sigma)
    if objective == "scale":
        mean = {k: v.detach().clone() for k, v in trained.items()}
        log_std = {"scale": torch.tensor(log_start, dtype=torch.float64, requires_grad=True)}
        mean_optimizer = None
    else:
        mean = {k: v.detach().clone().requires_grad_(True) for k, v in trained.items()}
        log_std = {k: torch.full_like(v, log_start, requires_grad=True) for k, v in trained.items()}
        # SGD with momentum for the means (PBB's choice: Adam's per-coordinate scaling lets the KL pull
        # every weight towards the prior at full speed); Adam for the log-stds, whose gradients are tiny
        mean_optimizer = torch.optim.SGD(mean.values(), lr=learning_rate, momentum=0.95)

    def stds() -> dict[str, torch.Tensor]:
        if objective == "scale":
            s = torch.exp(log_std["scale"])
            return {k: s.to(v.dtype).expand_as(v) for k, v in mean.items()}
        return {k: torch.exp(r) for k, r in log_std.items()}

    forward_passes = 0
    sigma_optimizer = torch.optim.Adam(log_std.values(), lr=sigma_learning_rate)
    optimizers = [sigma_optimizer] + ([mean_optimizer] if mean_optimizer is not None else [])
    steps = range(iterations)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="PAC-Bayes posterior")
    for _ in steps:
        index = torch.randint(0, n, (min(batch_size, n),), generator=generator)
        with torch.enable_grad():
            sigma = stds()
            noise = {k: torch.randn(v.shape, generator=generator, dtype=v.dtype).to(v.device) for k, v in mean.items()}
            weights = {k: mean[k] + sigma[k] * noise[k] for k in mean}
            loss = _bounded_cross_entropy(problem.forward(weights, _inputs.rows(x, index)), y[index], p_min)
            kl = gaussian_kl(mean, sigma, prior_mean, _best_prior_sigma(mean, sigma, prior_mean).detach())
            value = _objective(objective, loss.double(), kl.double(), n, delta)
            for optimizer in optimizers:
                optimizer.zero_grad()
            value.backward()
        for optimizer in optimizers:
            optimizer.step()
        forward_passes += 2 * len(index)

    # evaluation: round σ_P to the grid (union bound over G priors), then the two kl inversions
    final_std = {k: v.detach() for k, v in stds().items()}
    final_mean = {k: v.detach() for k, v in mean.items()}
    learned = float(_best_prior_sigma(final_mean, final_std, prior_mean))
    prior_sigma = min(grid, key=lambda s: abs(math.log(s) - math.log(learned)))
    with torch.no_grad():
        kl_value = float(gaussian_kl(final_mean, final_std, prior_mean, torch.tensor(prior_sigma, dtype=torch.float64)))
    posterior = GaussianPosterior(problem.model, final_mean, final_std, problem.buffers(), problem.output_fn)
    wrong, draws = posterior.errors_per_example_draws(x, y, mc_samples, generator)
    forward_passes += draws
    with torch.no_grad():
        deterministic = float((posterior.forward(final_mean, x).argmax(-1) != y).double().mean())
    forward_passes += n
    empirical_mc = wrong / draws
    empirical_bound = kl_inverse_upper(empirical_mc, math.log(2.0 / delta_mc) / draws)
    kl_term = (kl_value + math.log(2.0 * math.sqrt(n) / (delta / len(grid)))) / n
    certificate = kl_inverse_upper(empirical_bound, kl_term)
    report = current_guard_report(problem.model)
    return PacBayesCertificate(
        certificate=certificate,
        confidence=1.0 - delta - delta_mc,
        delta=delta,
        delta_mc=delta_mc,
        empirical_risk_mc=empirical_mc,
        empirical_risk_bound=empirical_bound,
        kl=kl_value,
        kl_term=kl_term,
        deterministic_error=deterministic,
        n_bound=n,
        n_prior=n_prior,
        prior_sigma=prior_sigma,
        grid_size=len(grid),
        objective=objective,
        prior=prior,
        posterior_start=posterior_start,
        iterations=iterations,
        mc_samples=mc_samples,
        mc_draws=draws,
        forward_passes=forward_passes,
        posterior=posterior,
        note=getattr(report, "note", "") if report is not None else "",
    )
