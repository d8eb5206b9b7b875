"""Trainability at the edge of chaos (Schoenholz et al. 2017): trainable depth vs the correlation depth xi_c.

Mean-field theory (Poole et al. 2016; Schoenholz et al. 2017) says two inputs' correlation
approaches its fixed point over about ``xi_c = -1 / ln chi_c`` layers of a random tanh network
(``W ~ N(0, sigma_w^2 / fan_in)``, ``b ~ N(0, sigma_b^2)``); beyond a few xi_c the input is forgotten
and the network cannot be trained. xi_c diverges at the edge of chaos (chi_1 = 1), so the trainable
depth peaks there; Schoenholz et al. found networks trainable up to about 6 xi_c.

Trial kind ``edge_of_chaos``: a tanh MLP (``depth`` hidden layers of ``width`` units) initialised at
``(sigma_w2, sigma_b2)`` from the trial seed, trained for ``steps`` steps of minibatch SGD (the spec's
``train`` recipe) on standardised inputs; metrics: training accuracy and loss before/after, test
accuracy, and the mean-field chi_1 and xi_c (:func:`deepscope.expressivity.signal_propagation`).

Verdict (α = 0.05): a trial is *trainable* when its final training accuracy is at least
``params.trainable_accuracy``. One-sided Cochran-Mantel-Haenszel test, stratified by depth, that
trials with depth <= k · xi_c (k = ``params.xi_multiple``, 6 after Schoenholz et al.) are trainable
more often than trials of the same depth beyond it (so depth alone cannot pass the test). Reported
alongside: Spearman's ρ between xi_c and the measured trainable depth per sigma_w^2.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from deepscope.experiments._base import Outcome, Verdict
from deepscope.experiments._stats import mean_se, spearman_one_sided
from deepscope.sweep.spec import _float, _int

__all__ = ["NAME", "TITLE", "CLAIM", "REFERENCES", "PARAMS", "protocol", "spec", "check", "run_kind", "analyse"]

NAME = "edge_of_chaos"
TITLE = "Trainability at the edge of chaos"
CLAIM = (
    "Deep tanh networks are trainable only up to a depth proportional to the mean-field correlation depth xi_c, "
    "which diverges at the edge of chaos: trainability is governed by signal propagation at initialisation."
)
REFERENCES = [
    "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, Deep information propagation (ICLR)",
    "Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli 2016, Exponential expressivity in deep neural networks "
    "through transient chaos (NeurIPS)",
]
PARAMS = {
    "depth": (_int(1, 1000), 8),
    "sigma_w2": (_float(0.0, strict=True), 1.5),
    "sigma_b2": (_float(0.0), 0.05),
    "steps": (_int(1, 10_000_000), 300),
    "width": (_int(1, 100_000), 64),
    "trainable_accuracy": (_float(0.0, 1.0, strict=True), 0.5),
    "xi_multiple": (_float(0.0, strict=True), 6.0),
}
ALPHA = 0.05


def spec(budget: str) -> dict[str, Any]:
    """The sweep: depth x sigma_w^2 grid of tanh MLPs on digits (small: 5 x 5 x 2 seeds = 50 runs)."""
    small = budget == "small"
    return {
        "name": f"{NAME}-{budget}",
        "description": "Trainability of tanh MLPs over a depth x sigma_w^2 grid vs the mean-field xi_c.",
        "kind": NAME,
        "seeds": [0, 1] if small else [0, 1, 2, 3],
        "dataset": {"name": "digits", "test_fraction": 0.5} if small else {"name": "mnist1d", "n_samples": 10_000},
        "train": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64, "max_epochs": 1},
        "params": {"sigma_b2": 0.05, "steps": 300 if small else 3000, "width": 64 if small else 256},
        "search": {
            "grid": {
                "params.depth": [4, 8, 16, 32, 48] if small else [4, 8, 16, 24, 32, 48, 64, 96, 128],
                "params.sigma_w2": [0.5, 1.0, 1.5, 2.5, 4.0]
                if small
                else [0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0],
            }
        },
    }


def _values(spec: dict[str, Any], key: str) -> list[Any]:
    grid = spec["search"]["grid"].get(f"params.{key}")
    return list(grid) if isinstance(grid, list) else [spec["params"][key]]


def check(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Refuse grids that cannot test the claim: < 3 depths, < 3 sigma_w^2 values, < 2 seeds, a searched sigma_b2."""
    if spec.get("kind") != NAME:
        return [("kind", f"expected {NAME!r}, got {spec.get('kind', 'train')!r}")]
    problems = []
    if spec["search"]["kind"] != "grid":
        problems.append(("search.kind", "expected 'grid' (the test needs every depth at every sigma_w^2)"))
    depths, sigmas = _values(spec, "depth"), _values(spec, "sigma_w2")
    if len(set(depths)) < 3:
        problems.append(("search.grid.params.depth", f"expected at least 3 depths, got {depths!r}"))
    if len(set(sigmas)) < 3:
        problems.append(("search.grid.params.sigma_w2", f"expected at least 3 sigma_w2 values, got {sigmas!r}"))
    if len(spec["seeds"]) < 2:
        problems.append(
            ("seeds", f"expected at least 2 seeds (accuracies are reported over seeds), got {spec['seeds']!r}")
        )
    if len(_values(spec, "sigma_b2")) != 1:
        problems.append(("search.grid.params.sigma_b2", "expected one sigma_b2 (xi_c curves are per sigma_b2)"))
    return problems


def protocol(spec: dict[str, Any]) -> str:
    p, recipe = spec["params"], spec["train"]
    return (
        f"tanh MLPs of width {p['width']} on {spec['dataset']['name']} (standardised inputs), depths "
        f"{_values(spec, 'depth')} x sigma_w^2 {_values(spec, 'sigma_w2')} at sigma_b^2 = {p['sigma_b2']}, "
        f"{len(spec['seeds'])} seeds; {p['steps']} steps of SGD (lr {recipe['lr']}, momentum {recipe['momentum']}, "
        f"batch {recipe['batch_size']}). Trainable: final training accuracy >= {p['trainable_accuracy']}. "
        f"Mean-field xi_c from deepscope.expressivity.signal_propagation; theory line: depth = {p['xi_multiple']:g} xi_c."
    )


@functools.lru_cache(maxsize=256)
def mean_field(sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
    """(chi_1, xi_c) of a tanh network at (sigma_w^2, sigma_b^2), from the mean-field maps."""
    from deepscope.expressivity import signal_propagation

    result = signal_propagation(
        "tanh", sigma_w=math.sqrt(sigma_w2), sigma_b=math.sqrt(sigma_b2), depth=1, width=0, edge_points=0
    )
    return float(result.chi_1), float(result.xi_c)


def run_kind(config: dict[str, Any]):
    """Initialise at (sigma_w2, sigma_b2), train ``steps`` SGD steps, report accuracies and the mean field."""
    from torch import nn

    from deepscope.models import build
    from deepscope.sweep.trial import trial_data

    params, recipe = config["params"], config["train"]
    dataset = trial_data(config)
    x = dataset.x_train.flatten(1).float()
    mean, scale = x.mean(0), x.std(0) + 1e-6
    x, y = (x - mean) / scale, dataset.y_train
    torch.manual_seed(config["seed"])
    model = build(
        "mlp", (x.shape[1],), dataset.num_classes, widths=[params["width"]] * params["depth"], activation="tanh"
    )
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, math.sqrt(params["sigma_w2"] / layer.in_features))
            nn.init.normal_(layer.bias, 0.0, math.sqrt(params["sigma_b2"]))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"], weight_decay=recipe["weight_decay"]
    )
    generator = torch.Generator().manual_seed(config["seed"])
    loss_fn = nn.functional.cross_entropy

    def evaluate(inputs, labels) -> tuple[float, float]:
        with torch.no_grad():
            logits = model(inputs)
            loss = float(loss_fn(logits, labels))
            return (loss if math.isfinite(loss) else math.inf), float((logits.argmax(1) == labels).float().mean())

    initial_loss, initial_accuracy = evaluate(x, y)
    curve, diverged = [], False
    for step in range(params["steps"]):
        batch = torch.randint(0, len(x), (min(recipe["batch_size"], len(x)),), generator=generator)
        loss = loss_fn(model(x[batch]), y[batch])
        if not torch.isfinite(loss):
            diverged = True
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, params["steps"] // 50) == 0:
            curve.append([step, float(loss.detach())])
    final_loss, final_accuracy = evaluate(x, y)
    if diverged or not math.isfinite(final_loss):
        final_accuracy = 1.0 / dataset.num_classes  # a diverged run is not trainable
    chi_1, xi_c = mean_field(params["sigma_w2"], params["sigma_b2"])
    metrics = {
        "depth": (float(params["depth"]), None),
        "sigma_w2": (float(params["sigma_w2"]), None),
        "train_accuracy": (final_accuracy, None),
        "initial_train_accuracy": (initial_accuracy, None),
        "diverged": (float(diverged), None),
        "chi_1": (chi_1, None),
        "xi_c": (min(xi_c, 1e9), None),
    }
    if math.isfinite(final_loss):
        metrics["train_loss"] = (final_loss, None)
    if dataset.x_test is not None and not diverged:
        test = (dataset.x_test.flatten(1).float() - mean) / scale
        metrics["test_accuracy"] = (evaluate(test, dataset.y_test)[1], None)
    return metrics, {"loss_curve": curve}, None


def trainable_depths(frame, threshold: float) -> dict[float, float]:
    """Per sigma_w^2: the largest depth whose mean training accuracy over seeds reaches the threshold (0 if none)."""
    out = {}
    for sigma, group in frame.groupby("sigma_w2"):
        means = group.groupby("depth")["train_accuracy"].mean()
        ok = [d for d, acc in means.items() if acc >= threshold]
        out[float(sigma)] = float(max(ok)) if ok else 0.0
    return out


def mantel_haenszel(inside, trainable, strata) -> tuple[float, float, float]:
    """One-sided Cochran-Mantel-Haenszel test (no continuity correction) of a positive association between
    ``inside`` and ``trainable`` within strata: returns (z, p for > 0, p for < 0).

    Per stratum ``a`` = trainable inside, ``E[a] = n_in m_tr / n``, ``Var[a] = n_in n_out m_tr m_not / (n^2 (n-1))``
    (hypergeometric); ``z = sum(a - E[a]) / sqrt(sum Var[a])`` (Mantel & Haenszel 1959).
    """
    from scipy import stats

    excess = variance = 0.0
    for stratum in np.unique(strata):
        pick = strata == stratum
        n = int(pick.sum())
        n_in, m_tr = int(inside[pick].sum()), int(trainable[pick].sum())
        if n < 2:
            continue
        excess += int((inside & trainable)[pick].sum()) - n_in * m_tr / n
        variance += n_in * (n - n_in) * m_tr * (n - m_tr) / (n * n * (n - 1))
    if variance <= 0:
        return math.nan, math.nan, math.nan
    z = excess / math.sqrt(variance)
    return z, float(stats.norm.sf(z)), float(stats.norm.cdf(z))


def verdict_of(frame, threshold: float, multiple: float, alpha: float = ALPHA) -> tuple[Verdict, dict[str, Any]]:
    """CMH test of (depth <= k xi_c) vs (trainable) within each depth, from columns depth, sigma_w2, xi_c, train_accuracy.

    Stratifying by depth matters: shallow networks train at any sigma_w^2, so a pooled 2x2 test would
    credit xi_c with an effect of depth alone. Within one depth, only sigma_w^2 (through xi_c) varies.
    """
    depth = frame["depth"].to_numpy(float)
    inside = depth <= multiple * frame["xi_c"].to_numpy(float)
    trainable = frame["train_accuracy"].to_numpy(float) >= threshold
    table = [
        [int((inside & trainable).sum()), int((inside & ~trainable).sum())],
        [int((~inside & trainable).sum()), int((~inside & ~trainable).sum())],
    ]
    rate_in = table[0][0] / max(1, sum(table[0]))
    rate_out = table[1][0] / max(1, sum(table[1]))
    z, p_value, opposite = mantel_haenszel(inside, trainable, depth)
    numbers: dict[str, Any] = {
        "contingency": {"inside": table[0], "beyond": table[1]},
        "trainable_rate_inside": rate_in,
        "trainable_rate_beyond": rate_out,
        "mantel_haenszel_z": z if math.isfinite(z) else None,
    }
    depths = trainable_depths(frame, threshold)
    xi = frame.groupby("sigma_w2")["xi_c"].first()
    numbers["trainable_depth"] = {f"{s:g}": d for s, d in depths.items()}
    if len(depths) >= 3 and len(set(depths.values())) > 1:
        rho, rho_p = spearman_one_sided([xi[s] for s in depths], list(depths.values()))
        numbers.update({"spearman_rho": rho, "spearman_p": rho_p})
    if math.isfinite(p_value) and p_value < alpha:
        held: bool | None = True
    elif math.isfinite(opposite) and opposite < alpha:
        held = False
    else:
        held = None
    detail = (
        f"{table[0][0]}/{sum(table[0])} runs trainable within {multiple:g} xi_c, {table[1][0]}/{sum(table[1])} beyond"
        + (
            f"; within depths, z = {z:.2f}."
            if math.isfinite(z)
            else "; no depth has runs on both sides with mixed outcomes."
        )
    )
    if "spearman_rho" in numbers:
        detail += (
            f" Spearman ρ(xi_c, trainable depth) = {numbers['spearman_rho']:.2f} (p = {numbers['spearman_p']:.3g})."
        )
    test = (
        f"one-sided Cochran-Mantel-Haenszel test stratified by depth over {len(frame)} runs: trainable (train "
        f"accuracy >= {threshold:g}) more often at depth <= {multiple:g} xi_c than beyond (statistic: z)"
    )
    statistic = z if math.isfinite(z) else math.nan
    return Verdict(held, test, statistic, None if math.isnan(p_value) else p_value, alpha, detail), numbers


def analyse(frame, spec: dict[str, Any], store) -> Outcome:
    """The stratified test, the heat map with k·xi_c overlaid, and the per-cell table."""
    p = spec["params"]
    verdict, numbers = verdict_of(frame, p["trainable_accuracy"], p["xi_multiple"])
    rows = []
    for (sigma, depth), cell in frame.groupby(["sigma_w2", "depth"]):
        mean, se = mean_se(cell["train_accuracy"])
        rows.append(
            {"sigma_w2": sigma, "depth": int(depth), "xi_c": round(float(cell["xi_c"].iloc[0]), 2),
             "chi_1": round(float(cell["chi_1"].iloc[0]), 3), "train accuracy": f"{mean:.3f} ± {se:.3f}",
             "trainable": f"{int((cell['train_accuracy'] >= p['trainable_accuracy']).sum())}/{len(cell)}"}
        )  # fmt: skip
    columns = ["sigma_w2", "depth", "xi_c", "chi_1", "train accuracy", "trainable"]
    caption = (
        f"Mean training accuracy after {p['steps']} SGD steps over the depth x sigma_w^2 grid (colour), with "
        f"{p['xi_multiple']:g} xi_c (white line) and the measured trainable depth (circles); dotted: the edge of chaos."
    )
    figures = [(_headline(frame, p), caption)]
    means = frame.groupby(["sigma_w2", "depth"]).agg(accuracy=("train_accuracy", "mean"), xi=("xi_c", "first"))
    missed = [f"σ_w² {s:g} depth {int(d)}" for (s, d), r in means.iterrows()
              if d <= p["xi_multiple"] * r.xi and r.accuracy < p["trainable_accuracy"]]  # fmt: skip
    notes = [
        f"Trainability is measured after {p['steps']} steps: the trainable region widens with training time "
        "(Schoenholz et al. 2017, Fig. 6), so a short budget can miss deep cells the theory allows."
        + (
            f" Cells within {p['xi_multiple']:g} ξ_c whose mean accuracy stayed below the threshold: "
            + ", ".join(missed)
            + "."
            if missed
            else ""
        )  # fmt: skip
    ]
    return Outcome(verdict, figures, [("Training accuracy per cell", columns, rows)], numbers, notes)


def _headline(frame, p: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    from deepscope.sweep._report_figures import inline_svg

    sigmas = sorted(frame["sigma_w2"].unique())
    depths = sorted(frame["depth"].unique())
    grid = frame.groupby(["depth", "sigma_w2"])["train_accuracy"].mean().unstack().reindex(index=depths, columns=sigmas)
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axis = figure.subplots()
    edges = lambda v: np.concatenate([[v[0] - (v[1] - v[0]) / 2], (v[1:] + v[:-1]) / 2, [v[-1] + (v[-1] - v[-2]) / 2]])  # noqa: E731
    image = axis.pcolormesh(edges(np.array(sigmas, float)), edges(np.array(depths, float)), grid.to_numpy(),
                            cmap="viridis", vmin=0.0, vmax=1.0, shading="flat")  # fmt: skip
    figure.colorbar(image, ax=axis, label="training accuracy")
    fine = np.linspace(min(sigmas), max(sigmas), 13)
    curve = np.array([p["xi_multiple"] * mean_field(float(s), p["sigma_b2"])[1] for s in fine])
    axis.plot(
        fine, np.minimum(curve, 10 * max(depths)), color="white", lw=2, label=f"{p['xi_multiple']:g} ξ_c (mean field)"
    )
    measured = trainable_depths(frame, p["trainable_accuracy"])
    axis.plot(list(measured), list(measured.values()), "o", color="#c26a00", ms=6, label="measured trainable depth")
    from deepscope.expressivity.activations import critical_sigma_w

    critical = critical_sigma_w(torch.tanh, math.sqrt(p["sigma_b2"]))
    if critical is not None and min(sigmas) <= critical**2 <= max(sigmas):
        axis.axvline(critical**2, color="white", ls=":", lw=1)
    axis.set_ylim(edges(np.array(depths, float))[0], edges(np.array(depths, float))[-1])
    axis.set_xlabel("σ_w²")
    axis.set_ylabel("depth")
    axis.legend(fontsize=7, loc="upper right")
    return inline_svg(figure)
