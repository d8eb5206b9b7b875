"""Memorisation of random labels (Zhang et al. 2017): the same network fits random labels, more slowly.

The labels of a fraction ``p`` of the training examples are replaced by classes drawn uniformly
at random (Zhang et al.'s "partially corrupted labels": the draw may hit the true class), and the
same MLP with the same recipe is trained until it fits: the training cross-entropy reaches
``train.stop_loss`` (the fit criterion), within ``train.max_epochs``. Every trial also computes
the generalization measures (:func:`deepscope.generalization.measures`, cheap families) and the
PAC-Bayes certificate (:func:`deepscope.generalization.pac_bayes_certificate`) of the fitted
network, on the labels it was trained on, so the page compares them on true vs random labels.

**Test.** The claim holds when, at α = 0.05:

1. every run fits (train cross-entropy ≤ ``stop_loss`` within the epoch budget);
2. epochs-to-fit grow with the random fraction: Spearman's ρ between ``p`` and the epochs to
   fit, over all runs, one-sided (ρ > 0);
3. test error grows with ``p`` (Spearman, one-sided) and, with all labels random, reaches chance:
   a one-sided one-sample t-test over seeds that the test error at ``p = 1`` exceeds the chance
   error ``1 − 1/K`` minus a margin of 0.05.

It did not hold when either Spearman ρ is significantly negative (random labels fitted faster, or
generalised better). A run that does not fit within the epoch budget makes the verdict
inconclusive (the budget was too small to tell), as does a grid without fraction 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepscope.experiments._base import Outcome, Verdict
from deepscope.experiments._stats import mean_se, spearman_one_sided

NAME = "random_labels"
TITLE = "Memorisation of random labels"
CLAIM = (
    "The same network, trained the same way, fits training labels that are partly or wholly random; it takes "
    "more epochs the more labels are random, and its test error rises to chance."
)
REFERENCES = [
    "Zhang, Bengio, Hardt, Recht & Vinyals (2017), Understanding deep learning requires rethinking "
    "generalization, ICLR",
    "Dziugaite & Roy (2017), Computing nonvacuous generalization bounds for deep (stochastic) neural "
    "networks with many more parameters than training data, UAI",
]
ALPHA = 0.05
CHANCE_MARGIN = 0.05
_FRACTION = "params.random_fraction"


def _fraction(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or not 0.0 <= float(value) <= 1.0:
        raise ValueError("a finite float >= 0.0 and <= 1.0")
    return float(value)


PARAMS = {"random_fraction": (_fraction, 0.0)}


def randomise_labels(labels: torch.Tensor, fraction: float, classes: int, seed: int) -> torch.Tensor:
    """A copy of ``labels`` with ``round(fraction · n)`` of them (chosen by ``seed``) drawn uniformly from ``classes``."""
    labels = labels.clone()
    generator = torch.Generator().manual_seed(20_011 + seed)
    chosen = torch.randperm(len(labels), generator=generator)[: round(fraction * len(labels))]
    labels[chosen] = torch.randint(0, classes, (len(chosen),), generator=generator)
    return labels


def epochs_to_fit(train_accuracy: list[float], train_loss: list[float], stop_loss: float) -> tuple[float, float]:
    """(first epoch with train error 0, first epoch with train loss ≤ stop_loss); NaN where never reached."""
    zero = next((float(e) for e, a in enumerate(train_accuracy) if a is not None and a >= 1.0), math.nan)
    loss = next((float(e) for e, value in enumerate(train_loss) if value <= stop_loss), math.nan)
    return zero, loss


def run_kind(config: Mapping[str, Any]):
    """Train one network on partly random labels until it fits; measures and PAC-Bayes on its training labels."""
    import dataclasses

    from deepscope.problem import Problem
    from deepscope.sweep.analyses import run_analysis
    from deepscope.sweep.trial import history_record, state_bytes, train_model, trial_data

    dataset = trial_data(config)
    fraction = config["params"]["random_fraction"]
    labels = randomise_labels(dataset.y_train, fraction, dataset.num_classes, config["seed"])
    dataset = dataclasses.replace(dataset, y_train=labels)
    recipe = config["train"]
    run = train_model(config, dataset)
    history = run.history
    zero_error, fit = epochs_to_fit(history.train_accuracy, history.train_loss, recipe["stop_loss"])
    metrics = {
        "random_fraction": (fraction, None),
        "train_loss": (history.train_loss[-1], None),
        "train_error": (1.0 - history.train_accuracy[-1], None),
        "test_error": (1.0 - history.test_accuracy[-1], None),
        "test_loss": (history.test_loss[-1], None),
        "epochs_run": (float(run.config["epochs_run"]), None),
        "epochs_to_fit": (fit, None),
        "epochs_to_zero_error": (zero_error, None),
        "fitted": (float(run.config["stopped_by"] == "stop_loss"), None),
        "parameters": (float(sum(p.numel() for p in run.model.parameters())), None),
    }
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v[0])}
    problem = Problem.from_dataset(run.model, dataset, init_state=run.init_state)
    for entry in config["analyses"]:
        metrics.update(run_analysis(entry, problem, dataset.x_test))
    return metrics, history_record(run), state_bytes(run.model)


_ANALYSES = [
    {"name": "measures", "options": {"families": ["norm", "margin"], "max_samples": 512}},
    {"name": "pac_bayes_certificate", "options": {"iterations": 100, "prior_iterations": 100, "mc_samples": 5}},
]


def spec(budget: str) -> dict[str, Any]:
    """small: digits, 300 examples, MLP 2×256, five fractions × 3 seeds; full: mnist1d, 4000 examples, 5 seeds."""
    if budget == "small":
        dataset = {"name": "digits", "test_fraction": 0.5}
        train_size, seeds, widths, epochs = 300, [0, 1, 2], 256, 1000
    else:
        dataset = {"name": "mnist1d", "n_samples": 8000, "test_fraction": 0.5}
        train_size, seeds, widths, epochs = 4000, [0, 1, 2, 3, 4], 1024, 20_000
    analyses = _ANALYSES if budget == "small" else [{"name": "measures"}, {"name": "pac_bayes_certificate"}]
    return {
        "name": f"{NAME}-{budget}",
        "description": "epochs to fit, test error, measures and PAC-Bayes vs the fraction of random labels",
        "kind": NAME,
        "seeds": seeds,
        "dataset": dataset,
        "model": {"arch": "mlp", "depth": 2, "width": widths},
        "train": {"optimizer": "adam", "lr": 0.001, "batch_size": 64, "max_epochs": epochs, "stop_loss": 0.01},
        "data": {"train_size": train_size, "label_noise": 0.0},
        "search": {"grid": {_FRACTION: [0.0, 0.25, 0.5, 0.75, 1.0]}},
        "analyses": analyses,
    }


def _fractions(spec: Mapping[str, Any]) -> list[float]:
    return list(spec["search"]["grid"].get(_FRACTION, [spec["params"]["random_fraction"]]))


def check(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Refuse settings that cannot test the claim."""
    problems = []
    fractions = _fractions(spec)
    if len(fractions) < 3 or 0.0 not in fractions or 1.0 not in fractions:
        problems.append((f"search.grid.{_FRACTION}", f"expected at least 3 fractions including 0.0 and 1.0, got {fractions}"))  # fmt: skip
    if len(spec["seeds"]) < 2:
        problems.append(("seeds", f"expected at least 2 seeds for the t-test at fraction 1, got {len(spec['seeds'])}"))
    if spec["train"]["stop_loss"] is None:
        problems.append(("train.stop_loss", "expected a fit criterion (a train cross-entropy > 0), got None"))
    if spec["data"]["label_noise"] != 0.0:
        problems.append(("data.label_noise", f"expected 0.0 (labels are randomised by the fraction), got {spec['data']['label_noise']}"))  # fmt: skip
    return problems


def protocol(spec: Mapping[str, Any]) -> str:
    recipe, model = spec["train"], spec["model"]
    return (
        f"{spec['dataset']['name']}, {spec['data']['train_size']} training examples; a fraction "
        f"{_fractions(spec)} of their labels drawn uniformly at random (per seed); MLP {model['depth']} × "
        f"{model['width']}; {recipe['optimizer']} lr {recipe['lr']}, batch {recipe['batch_size']}, until the train "
        f"cross-entropy reaches {recipe['stop_loss']} (at most {recipe['max_epochs']} epochs); seeds {spec['seeds']}. "
        "Measures and the PAC-Bayes certificate are computed on the labels each network was trained on."
    )


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Spearman's ρ with the one-sided p-values for ρ > 0 and ρ < 0; (0, 1, 1) when either side is constant."""
    if len(x) < 3 or np.ptp(x) == 0 or len(set(y.tolist())) < 2:
        return 0.0, 1.0, 1.0
    rho, p_positive = spearman_one_sided(x, y)
    _, p_negative = spearman_one_sided(x, y, negative=True)
    return rho, p_positive, p_negative


def decide_memorisation(frame, classes: int = 10, alpha: float = ALPHA) -> Verdict:
    """The verdict from per-run ``random_fraction``, ``fitted``, ``epochs_to_fit`` and ``test_error`` columns."""
    from scipy import stats

    test = (
        "all runs fit; one-sided Spearman ρ over runs (random fraction vs epochs to fit, and vs test error); "
        f"one-sided one-sample t-test over seeds that the test error at fraction 1 exceeds chance − {CHANCE_MARGIN}"
    )
    fractions = np.asarray(frame["random_fraction"], float)
    fitted = np.asarray(frame["fitted"], float)
    epochs = np.asarray(frame["epochs_to_fit"] if "epochs_to_fit" in frame else [math.nan] * len(frame), float)
    error = np.asarray(frame["test_error"], float)
    epochs = np.where(np.isfinite(epochs), epochs, np.inf)  # a run that never fit ranks last
    rho_fit, p_fit, p_fit_opposite = _spearman(fractions, epochs)
    rho_err, p_err, p_err_opposite = _spearman(fractions, error)
    chance = 1.0 - 1.0 / classes
    full = error[fractions == fractions.max()]
    if len(full) >= 2 and np.ptp(full) > 0:
        p_chance = float(stats.ttest_1samp(full, chance - CHANCE_MARGIN, alternative="greater").pvalue)
    else:  # identical errors: no spread to test, the sign decides
        p_chance = 0.0 if len(full) >= 2 and full[0] > chance - CHANCE_MARGIN else 1.0
    all_fit = bool(len(fitted)) and bool(np.all(fitted == 1.0))
    reached = np.where(np.isfinite(epochs), epochs, np.nan)  # means over the runs that fit
    rise, rise_se = mean_se(list(reached[fractions == fractions.max()]))
    base, base_se = mean_se(list(reached[fractions == fractions.min()]))
    detail = (
        f"{int(fitted.sum())}/{len(fitted)} runs fit; epochs to fit {base:.0f} ± {base_se:.0f} at fraction "
        f"{fractions.min():g} vs {rise:.0f} ± {rise_se:.0f} at {fractions.max():g} (Spearman ρ = {rho_fit:.2f}, "
        f"p = {p_fit:.3g}); test error vs fraction ρ = {rho_err:.2f}, p = {p_err:.3g}; test error at fraction "
        f"{fractions.max():g}: {np.mean(full):.3f} (chance {chance:.2f}, t-test p = {p_chance:.3g})"
    )
    p_value = float(max(p_fit, p_err, p_chance))
    if fractions.max() < 1.0:
        held = None
    elif p_fit_opposite < alpha or p_err_opposite < alpha:
        held = False
    elif all_fit and rho_fit > 0 and rho_err > 0 and p_value < alpha:
        held = True
    else:
        held = None
    return Verdict(held, test, float(rho_fit), p_value, alpha, detail)


_FITTING = (
    "epochs_to_fit", "epochs_to_zero_error", "train_error", "test_error", "pac_bayes_certificate.certificate",
    "pac_bayes_certificate.empirical_risk_bound", "pac_bayes_certificate.kl", "pac_bayes_certificate.kl_term",
    "pac_bayes_certificate.deterministic_error",
)  # fmt: skip
_COLOURS = ("#2457a6", "#2e8b57", "#d4a017", "#c26a00", "#b3261e", "#7b4fa0")


def _mean_curve(histories: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean of 1 - accuracy over runs; a run that stopped early holds its last value."""
    curves = [1.0 - np.asarray(h[key], float) for h in histories if h.get(key)]
    length = max(len(c) for c in curves)
    padded = [np.concatenate([c, np.full(length - len(c), c[-1])]) for c in curves]
    return np.arange(length), np.mean(padded, axis=0)


def headline_svg(frame, histories: dict[float, list[dict[str, Any]]], classes: int = 10) -> str:
    """Train error per epoch by fraction; epochs to fit; test error and PAC-Bayes certificate vs fraction."""
    from matplotlib.figure import Figure

    from deepscope.sweep._report_figures import inline_svg

    figure = Figure(figsize=(12.0, 3.3), layout="constrained")
    left, middle, right, kl_axis = figure.subplots(1, 4)
    for index, (fraction, runs) in enumerate(sorted(histories.items())):
        if runs:
            epochs, error = _mean_curve(runs, "train_accuracy")
            left.plot(epochs, error, color=_COLOURS[index % len(_COLOURS)], lw=1.2, label=f"random {fraction:g}")
    left.set_xlabel("epoch")
    left.set_ylabel("train error (mean over seeds)")
    left.set_title("fitting: train error per epoch", fontsize=9)
    left.legend(fontsize=7)
    groups = sorted(frame.groupby("random_fraction"), key=lambda item: item[0])
    x = [float(f) for f, _ in groups]
    for axis, column, label, colour in (
        (middle, "epochs_to_fit", "epochs to fit", "#2457a6"),
        (right, "test_error", "test error", "#b3261e"),
        (right, "pac_bayes_certificate.certificate", "PAC-Bayes certificate", "#7b4fa0"),
        (kl_axis, "pac_bayes_certificate.kl", "KL(Q‖P)", "#7b4fa0"),
    ):
        if column not in frame:
            continue
        stats = [mean_se(list(g[column])) for _, g in groups]
        axis.errorbar(x, [m for m, _ in stats], yerr=[0 if math.isnan(s) else s for _, s in stats],
                      fmt="o-", ms=4, color=colour, label=label, capsize=2)  # fmt: skip
        axis.scatter(frame["random_fraction"], frame[column], s=8, color=colour, alpha=0.4, lw=0)
    middle.set_xlabel("fraction of random labels")
    middle.set_ylabel("epochs to fit")
    middle.set_title("epochs until train cross-entropy ≤ stop_loss", fontsize=9)
    right.axhline(1.0 - 1.0 / classes, color="#444444", ls="--", lw=1)
    right.text(0.0, 1.0 - 1.0 / classes, " chance", va="bottom", fontsize=8)
    right.set_xlabel("fraction of random labels")
    right.set_ylabel("error")
    right.set_ylim(0, 1.05)
    right.set_title("test error vs chance; PAC-Bayes certificate", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    kl_axis.set_yscale("log")
    kl_axis.set_xlabel("fraction of random labels")
    kl_axis.set_ylabel("KL(Q‖P) in nats")
    kl_axis.set_title("PAC-Bayes KL(Q‖P)", fontsize=9)
    return inline_svg(figure)


def _histories(frame, store: Path | None) -> dict[float, list[dict[str, Any]]]:
    from deepscope.sweep import SweepStore

    out: dict[float, list[dict[str, Any]]] = {}
    if store is None or not Path(store).exists():
        return out
    with SweepStore(store, create=False) as sweep:
        for fraction, key in zip(frame["random_fraction"], frame["key"]):
            history = sweep.history(key)
            if history:
                out.setdefault(float(fraction), []).append(history)
    return out


def analyse(frame, spec: Mapping[str, Any], store: Path | None = None) -> Outcome:
    """The verdict, the fitting figure and the measures / certificate table per fraction."""
    frame = frame.copy()
    if "random_fraction" not in frame:
        frame["random_fraction"] = spec["params"]["random_fraction"]
    for column in ("fitted", "epochs_to_fit"):
        if column not in frame:
            frame[column] = 0.0 if column == "fitted" else math.nan
    verdict = decide_memorisation(frame)
    caption = (
        "Train error per epoch (mean over seeds; a run that stopped holds its last value), epochs to fit, "
        "test error with the PAC-Bayes certificate, and the certificate's KL(Q‖P), vs the fraction of random "
        "labels (mean ± s.e.; dots: runs)."
    )
    figures = [(headline_svg(frame, _histories(frame, store)), caption)]
    groups = sorted(frame.groupby("random_fraction"), key=lambda item: item[0])
    labels = [f"{float(fraction):g}" for fraction, _ in groups]
    numbers: dict[str, Any] = {}

    def cell(column: str) -> dict[str, Any]:
        row: dict[str, Any] = {"quantity": column.removeprefix("measures.")}
        for label, (_, group) in zip(labels, groups):
            mean, se = mean_se(list(group[column]))
            row[label] = f"{mean:.4g} ± {se:.2g}" if math.isfinite(se) else mean
            numbers.setdefault(column, {})[label] = {"mean": mean, "stderr": se}
        return row

    fitting = [c for c in _FITTING if c in frame]
    measures = sorted(c for c in frame.columns if c.startswith("measures.") and c != "measures.parameter_count")
    header = ["quantity"] + labels
    tables = [
        ("Fitting, test error and PAC-Bayes certificate by fraction of random labels (mean ± s.e. over seeds)",
         header, [cell(c) for c in fitting]),
        ("Generalization measures by fraction of random labels (mean ± s.e. over seeds)",
         header, [cell(c) for c in measures]),
    ]  # fmt: skip
    notes = [
        "Measures and the certificate are computed on each network's own (partly random) training labels. "
        "A certificate of 1 is vacuous: it certifies nothing; its KL term says how far the posterior had to "
        "move from the prior."
    ]
    return Outcome(verdict, figures, tables, numbers, notes)
