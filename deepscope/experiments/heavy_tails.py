"""Heavy-tailed self-regularisation (Martin & Mahoney 2021) and the PAC-Bayes certificate, on one population.

Martin & Mahoney (2019, 2021) fit a power law ``rho(lambda) ~ lambda^-alpha`` to the tail of each
layer's empirical spectral density (the eigenvalues of ``W^T W``); across a population of trained
networks, a smaller mean alpha (heavier tails: more implicit self-regularisation) goes with better
test accuracy, without looking at any data. Alongside, a PAC-Bayes certificate (Dziugaite & Roy
2017; Pérez-Ortiz et al. 2021) bounds the true error of a Gaussian stochastic version of each trained
network with probability 1 − δ − δ_mc; on a population, it may fail for at most about that fraction.

Trial kind ``heavy_tails``: the generalization study's recipe (Jiang et al. 2020: an MLP on
mnist1d, SGD until the train cross-entropy reaches ``train.stop_loss`` or ``train.max_epochs``), the
population spanned by the searched hyperparameters; then :func:`deepscope.generalization.spectral_metrics`
(``mean_alpha`` over layers with a valid fit), :func:`deepscope.generalization.pac_bayes_certificate`
(data-dependent prior, which makes the certificate non-vacuous at this size) and the Monte-Carlo
test error of the certified stochastic predictor (``posterior.stochastic_error`` on the test split).

What is certified: with ``prior="data", posterior_start="prior"`` deepscope follows Pérez-Ortiz et al. — the prior is trained on
half of the training set from a fresh initialisation and the Gaussian posterior starts at the prior's
mean and is trained on the other half — so the certified predictor is built from the model's data and
architecture, not from its trained weights (each model gets its own certificate seed, from its trial
key). A certificate centred at the trained weights (``prior="init"``, or ``objective="scale"``) is
vacuous (≈ 1) for these networks: on 1,000 examples their weights move too far from initialisation
(KL ≈ 10^4 nats, measured while choosing the protocol). The trained networks' own test error is
compared with the certificate on the page, for information only.

Verdict (α = 0.05): (1) one-sided Spearman test that mean alpha and test accuracy are negatively
correlated; (2) one-sided exact binomial test of the certificate's violation rate (certificate below
the stochastic predictor's test error) against δ + δ_mc. Held when (1) is significant and (2) does not
reject; did not hold when (2) rejects or (1) is significant with the wrong sign; inconclusive otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepscope.experiments._base import Outcome, Verdict
from deepscope.experiments._stats import mean_se, spearman_one_sided
from deepscope.sweep.spec import _float, _int

__all__ = ["NAME", "TITLE", "CLAIM", "REFERENCES", "PARAMS", "protocol", "spec", "check", "run_kind", "analyse"]

NAME = "heavy_tails"
TITLE = "Heavy-tailed self-regularisation and the PAC-Bayes certificate"
CLAIM = (
    "Across a population of trained networks, a smaller layer power-law exponent alpha (heavier-tailed weight "
    "spectra) goes with higher test accuracy; and the PAC-Bayes certificate is at least the true test error of "
    "the certified predictor for all but about a fraction delta of the models."
)
REFERENCES = [
    "Martin & Mahoney 2021, Implicit self-regularization in deep neural networks (JMLR)",
    "Martin, Peng & Mahoney 2021, Predicting trends in the quality of state-of-the-art neural networks without "
    "access to training or testing data (Nature Communications)",
    "Pérez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvári 2021, Tighter risk certificates for neural networks (JMLR)",
]
PARAMS = {
    "min_eigenvalues": (_int(2, 100_000), 50),
    "delta": (_float(0.0, 1.0, strict=True), 0.025),
    "delta_mc": (_float(0.0, 1.0, strict=True), 0.01),
    "pac_iterations": (_int(0, 1_000_000), 100),
    "prior_iterations": (_int(1, 1_000_000), 150),
    "mc_samples": (_int(1, 10_000), 2),
    "test_weight_samples": (_int(1, 10_000), 10),
}
ALPHA = 0.05


def spec(budget: str) -> dict[str, Any]:
    """The population: batch size x learning rate (small: 3 x 2 x 2 seeds = 12 MLPs on mnist1d)."""
    small = budget == "small"
    return {
        "name": f"{NAME}-{budget}",
        "description": "Layer alpha vs test accuracy, and the PAC-Bayes certificate vs the true error, on one population.",
        "kind": NAME,
        "seeds": [0, 1] if small else [0, 1, 2],
        "dataset": {"name": "mnist1d", "n_samples": 3000 if small else 10_000, "test_fraction": 0.5},
        "data": {"train_size": 1000 if small else None},
        "model": {"arch": "mlp", "width": 128 if small else 512, "depth": 2 if small else 3},
        "train": {
            "optimizer": "sgd",
            "momentum": 0.9,
            "lr": 0.02,
            "batch_size": 32,
            "max_epochs": 40 if small else 600,
            "stop_loss": 0.01,
        },  # fmt: skip
        "params": {} if small else {"pac_iterations": 1000, "prior_iterations": 1000, "mc_samples": 10},
        "search": {
            "grid": {
                "train.batch_size": [16, 64, 256] if small else [16, 32, 64, 128, 256, 512],
                "train.lr": [0.01, 0.05] if small else [0.005, 0.01, 0.02, 0.05, 0.1],
                **({} if small else {"model.width": [256, 512, 1024]}),
            }
        },
    }


def check(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Refuse populations too small for the rank test (< 8 models) or with fewer than 2 seeds."""
    if spec.get("kind") != NAME:
        return [("kind", f"expected {NAME!r}, got {spec.get('kind', 'train')!r}")]
    grid = spec["search"]["grid"]
    points = spec["search"]["samples"] if spec["search"]["kind"] == "random" else 1
    if spec["search"]["kind"] == "grid":
        for values in grid.values():
            points *= len(values)
    problems = []
    if points < 3:
        problems.append(("search.grid", f"expected at least 3 hyperparameter settings, got {points}"))
    if len(spec["seeds"]) < 2:
        problems.append(("seeds", f"expected at least 2 seeds, got {spec['seeds']!r}"))
    elif points * len(spec["seeds"]) < 8:
        problems.append(("seeds", f"expected at least 8 models (settings x seeds), got {points * len(spec['seeds'])}"))
    if spec["model"].get("arch") != "mlp":
        problems.append(
            (
                "model.arch",
                f"expected 'mlp' (the recipe of the generalization study), got {spec['model'].get('arch')!r}",
            )
        )
    return problems


def protocol(spec: dict[str, Any]) -> str:
    m, t, p = spec["model"], spec["train"], spec["params"]
    grid = ", ".join(f"{k} {v}" for k, v in spec["search"]["grid"].items())
    return (
        f"MLPs (width {m.get('width')}, depth {m.get('depth')}) on {spec['dataset']['name']} "
        f"({spec['data']['train_size'] or 'all'} training examples), SGD (momentum {t['momentum']}) until train "
        f"cross-entropy {t['stop_loss']} or {t['max_epochs']} epochs, over {grid}, {len(spec['seeds'])} seeds. "
        f"spectral_metrics(min_eigenvalues={p['min_eigenvalues']}); pac_bayes_certificate(prior='data', posterior_start='prior', "
        f"delta={p['delta']}, delta_mc={p['delta_mc']}, iterations={p['pac_iterations']}, prior_iterations="
        f"{p['prior_iterations']}, mc_samples={p['mc_samples']}); the stochastic predictor's test error from "
        f"{p['test_weight_samples']} weight samples on the test split."
    )


def run_kind(config: dict[str, Any]):
    """Train as a "train" trial does, then alpha, the certificate and the stochastic test error."""
    from deepscope.generalization import pac_bayes_certificate, spectral_metrics
    from deepscope.problem import Problem
    from deepscope.sweep.trial import history_record, state_bytes, train_model, trial_data

    params = config["params"]
    dataset = trial_data(config)
    run = train_model(config, dataset)
    history = run.history
    spectra = spectral_metrics(run.model, min_eigenvalues=params["min_eigenvalues"])
    problem = Problem.from_dataset(run.model, dataset, init_state=run.init_state)
    certificate = pac_bayes_certificate(
        problem,
        params["delta"],
        prior="data",
        posterior_start="prior",  # Pérez-Ortiz et al.'s protocol: see the module docstring
        delta_mc=params["delta_mc"],
        iterations=params["pac_iterations"],
        prior_iterations=params["prior_iterations"],
        mc_samples=params["mc_samples"],
        seed=certificate_seed(config),
    )
    stochastic = certificate.stochastic_error((dataset.x_test, dataset.y_test), samples=params["test_weight_samples"])
    metrics: dict[str, tuple[float, float | None]] = {
        "train_error": (1.0 - history.train_accuracy[-1], None),
        "test_error": (1.0 - history.test_accuracy[-1], None),
        "test_accuracy": (history.test_accuracy[-1], None),
        "epochs_run": (float(run.config["epochs_run"]), None),
        "reached_stop_loss": (float(run.config["stopped_by"] == "stop_loss"), None),
        "mean_alpha": (spectra.mean_alpha, None),
        "mean_alpha_weighted": (spectra.mean_alpha_weighted, None),
        "valid_layers": (float(spectra.valid_layers), None),
        "certificate": (certificate.certificate, None),
        "confidence": (certificate.confidence, None),
        "empirical_risk_mc": (certificate.empirical_risk_mc, None),
        "kl": (certificate.kl, None),
        "stochastic_test_error": (stochastic.error, stochastic.standard_error),
    }
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v[0])}
    layers = [{"name": layer.name, "alpha": layer.alpha, "fit": layer.fit_quality} for layer in spectra.layers]
    record = {**history_record(run), "layers": layers}
    return metrics, _jsonable(record), state_bytes(run.model)


def certificate_seed(config: dict[str, Any]) -> int:
    """The certificate's seed, from the trial key: every model's certificate draws its own prior split,
    prior initialisation and weight samples, so the violation test counts independent certificates.

    (With ``prior="data"`` the certified predictor starts at the learned prior's mean, not at the trained
    weights — Pérez-Ortiz et al. 2021 — so with one seed for all models it would be the same predictor.)
    """
    from deepscope.sweep.spec import trial_key

    return int(trial_key(config)[:8], 16)


def _jsonable(value: Any) -> Any:
    """NaN and infinities (unfitted layers) as None, so the history is strict JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def verdict_of(frame, delta_total: float, alpha: float = ALPHA) -> tuple[Verdict, dict[str, Any]]:
    """Spearman(mean_alpha, test_accuracy) < 0 and the binomial test of certificate violations vs delta_total."""
    from scipy import stats

    fitted = frame.dropna(subset=["mean_alpha", "test_accuracy"])
    numbers: dict[str, Any] = {"models": len(frame), "models_with_alpha": len(fitted)}
    if len(fitted) >= 3 and fitted["mean_alpha"].nunique() > 1:
        rho, p_value = spearman_one_sided(fitted["mean_alpha"], fitted["test_accuracy"], negative=True)
        _, opposite = spearman_one_sided(fitted["mean_alpha"], fitted["test_accuracy"])
    else:
        rho, p_value, opposite = math.nan, math.nan, math.nan
    if "reached_stop_loss" in fitted:  # not tested: whether the trend survives among fully trained models
        done = fitted[fitted["reached_stop_loss"] > 0.5]
        numbers["models_reached_stop_loss"] = len(done)
        if len(done) >= 3 and done["mean_alpha"].nunique() > 1:
            rho_done, p_done = spearman_one_sided(done["mean_alpha"], done["test_accuracy"], negative=True)
            numbers.update({"spearman_rho_reached_stop_loss": rho_done, "spearman_p_reached_stop_loss": p_done})
    certified = frame.dropna(subset=["certificate", "stochastic_test_error"])
    violations = int((certified["certificate"] < certified["stochastic_test_error"]).sum())
    n = len(certified)
    binomial = float(stats.binomtest(violations, n, delta_total, alternative="greater").pvalue) if n else math.nan
    deterministic = int((certified["certificate"] < certified["test_error"]).sum()) if n else 0
    numbers.update(
        {"spearman_rho": rho, "spearman_p": p_value, "violations": violations, "certified_models": n,
         "violation_p": binomial, "violations_of_deterministic_error": deterministic,
         "delta_total": delta_total, "mean_certificate": float(certified["certificate"].mean()) if n else math.nan,
         "mean_stochastic_test_error": float(certified["stochastic_test_error"].mean()) if n else math.nan}
    )  # fmt: skip
    rejected = math.isfinite(binomial) and binomial < alpha
    if math.isfinite(p_value) and p_value < alpha and not rejected and n:
        held: bool | None = True
    elif rejected or (math.isfinite(opposite) and opposite < alpha):
        held = False
    else:
        held = None
    detail = (
        f"Spearman ρ(mean alpha, test accuracy) = {rho:.2f} over {len(fitted)} models (one-sided p = {p_value:.3g}); "
        f"the certificate was below the stochastic predictor's test error for {violations}/{n} models "
        f"(binomial p = {binomial:.3g} against δ + δ_mc = {delta_total:g}); mean certificate "
        f"{numbers['mean_certificate']:.3f} vs mean stochastic test error {numbers['mean_stochastic_test_error']:.3f}."
    )
    test = (
        f"one-sided Spearman test of ρ(mean alpha, test accuracy) < 0 over {len(fitted)} models, and a one-sided "
        f"exact binomial test of the certificate's violation rate > δ + δ_mc over {n} models"
    )
    return Verdict(held, test, rho, None if math.isnan(p_value) else p_value, alpha, detail), numbers


def analyse(frame, spec: dict[str, Any], store) -> Outcome:
    """The two tests, the two scatter plots and the per-setting table."""
    p = spec["params"]
    verdict, numbers = verdict_of(frame, p["delta"] + p["delta_mc"])
    searched = [c for c in spec["search"]["grid"] if c in frame.columns]
    rows = []
    for setting, group in frame.groupby(searched) if searched else [((), frame)]:
        row = dict(zip(searched, setting if isinstance(setting, tuple) else (setting,)))
        for column in ("mean_alpha", "test_accuracy", "certificate", "stochastic_test_error"):
            mean, se = mean_se(group[column]) if column in group else (math.nan, math.nan)
            row[column] = f"{mean:.3f} ± {se:.3f}"
        rows.append(row)
    columns = searched + ["mean_alpha", "test_accuracy", "certificate", "stochastic_test_error"]
    figures = [(_headline(frame, numbers), "Left: mean layer alpha vs test accuracy, one point per model (Spearman ρ). "
                "Right: PAC-Bayes certificate vs the certified stochastic predictor's test error; below the diagonal "
                "the certificate would be violated.")]  # fmt: skip
    notes = [
        "What is certified: with prior='data' the prior is trained on half of the training set from a fresh "
        "initialisation and the Gaussian posterior starts at the prior's mean (Pérez-Ortiz et al. 2021), so the "
        "certified predictor is built from each model's data and architecture, not from its trained weights; each "
        "model's certificate has its own seed (from its trial key). Certificates centred at the trained weights are "
        "vacuous for these networks (their weights move far from initialisation).",
        "The certificate bounds the stochastic (Gaussian-weights) predictor; the deterministic network's test error "
        f"was above the certificate for {numbers['violations_of_deterministic_error']} of {numbers['certified_models']} "
        "models (not a guarantee of the theorem, shown for comparison).",
    ]
    if "models_reached_stop_loss" in numbers:
        notes.append(
            f"{numbers['models_reached_stop_loss']} of {numbers['models_with_alpha']} models reached the stop loss "
            "within the epoch cap: part of the alpha-accuracy trend is training progress (under-trained layers have "
            "larger alpha, as Martin & Mahoney describe)."
            + (
                f" Among those that reached it, Spearman ρ = {numbers['spearman_rho_reached_stop_loss']:.2f} "
                f"(one-sided p = {numbers['spearman_p_reached_stop_loss']:.3g}, not part of the verdict)."
                if "spearman_rho_reached_stop_loss" in numbers
                else ""
            )
        )
    return Outcome(verdict, figures, [("Per setting (mean ± s.e. over seeds)", columns, rows)], numbers, notes)


def _headline(frame, numbers: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    from deepscope.sweep._report_figures import inline_svg

    figure = Figure(figsize=(9.0, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    colour_by = "train.batch_size" if "train.batch_size" in frame else None
    levels = sorted(frame[colour_by].unique()) if colour_by else [None]
    palette = ("#2457a6", "#c26a00", "#2e8b57", "#b3261e", "#7b4fa0", "#5b6775")
    for i, level in enumerate(levels):
        part = frame if level is None else frame[frame[colour_by] == level]
        label = None if level is None else f"batch {level}"
        left.scatter(part["mean_alpha"], part["test_accuracy"], s=18, color=palette[i % 6], label=label)
        right.scatter(part["stochastic_test_error"], part["certificate"], s=18, color=palette[i % 6], label=label)
    left.set_xlabel("mean layer α (power-law fit)")
    left.set_ylabel("test accuracy")
    rho = numbers.get("spearman_rho", math.nan)
    left.set_title(f"Spearman ρ = {rho:.2f}" if math.isfinite(rho) else "too few fitted models", fontsize=9)
    limits = np.array([0.0, 1.0])
    right.plot(limits, limits, color="#888888", lw=0.8, ls="--", label="certificate = error")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.set_xlabel("stochastic predictor's test error")
    right.set_ylabel("PAC-Bayes certificate")
    right.set_title(f"violations: {numbers['violations']}/{numbers['certified_models']}", fontsize=9)
    if colour_by:
        left.legend(fontsize=7)
    right.legend(fontsize=7, loc="lower right")
    return inline_svg(figure)
