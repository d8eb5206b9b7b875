"""Lazy training (Jacot et al. 2018; Chizat et al. 2019): wide NTK-parameterised nets barely move.

Under the NTK parameterisation, ``h_{l+1} = φ(W_l h_l / √n_l + β b_l)`` with every entry of ``W_l``
and ``b_l`` drawn from N(0, 1), gradient descent with a width-independent step size changes the
weights by ``‖θ_T − θ₀‖ = O(1)`` while ``‖θ₀‖ ~ √P``: the *relative* weight change and the drift of
the empirical neural tangent kernel both vanish like ``1/√width`` (for one hidden layer, where
``P ∝ width``), the kernel's drift vanishes too — bounded by ``O(1/√width)`` (Jacot et al. 2018), and
in fact ``O(1/width)`` (Dyer & Gur-Ari 2020) — and training follows the network linearised around its
initialisation (Jacot, Gabriel & Hongler 2018; Lee et al. 2019; Chizat, Oyallon & Bach 2019 call
this "lazy").

The trial kind ``lazy_training`` trains :class:`NTKMLP` by full-batch gradient descent on the squared
loss to ±1 targets (classes ``< C/2`` against the rest) and records

* ``weight_change`` = ``‖θ_T − θ₀‖ / ‖θ₀‖``;
* ``ntk_drift`` = ``‖Θ_T − Θ₀‖_F / ‖Θ₀‖_F`` of the empirical NTK (:func:`deepscope.curvature.ntk`) on a
  probe batch of held-out inputs;
* ``linearisation_gap`` = ``max_t |L_t − L^lin_t| / L_0``: the largest gap between the training loss of
  the network and that of its linearisation (:func:`deepscope.curvature.ntk_dynamics`), relative to
  the initial loss.

Verdict: each of the three decreases with width — Spearman's ρ < 0 over all (width, seed) runs,
one-sided, each at α = 0.05 (all three must hold: an intersection-union test). The log-log slopes
against width are reported with their standard errors (theory: −1/2 for the weight change, −1 for
the kernel drift).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope.experiments._base import Outcome, Verdict
from deepscope.experiments._stats import mean_se, spearman_one_sided
from deepscope.sweep.spec import _choice, _float, _int

NAME = "lazy_training"
TITLE = "Lazy training in wide networks"
CLAIM = (
    "Under the NTK parameterisation, the relative weight change ‖θ−θ₀‖/‖θ₀‖ and the drift of the neural "
    "tangent kernel during training shrink as the width grows (like 1/√width and 1/width), and the trained network "
    "follows its linearisation around initialisation ever more closely."
)
REFERENCES = [
    "Jacot, Gabriel & Hongler (2018), Neural tangent kernel: convergence and generalization in neural networks, "
    "NeurIPS",
    "Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington (2019), Wide neural networks of any depth "
    "evolve as linear models under gradient descent, NeurIPS",
    "Chizat, Oyallon & Bach (2019), On lazy training in differentiable programming, NeurIPS",
    "Dyer & Gur-Ari (2020), Asymptotics of wide networks from Feynman diagrams, ICLR",
]
ALPHA = 0.05
_WIDTH = "params.width"
METRICS = ("weight_change", "ntk_drift", "linearisation_gap")
_THEORY_SLOPE = {"weight_change": -0.5, "ntk_drift": -1.0}  # one hidden layer (module docstring)
_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}

PARAMS = {
    "width": (_int(1, 1_000_000), 256),
    "hidden_layers": (_int(1, 8), 1),
    "activation": (_choice(*_ACTIVATIONS), "tanh"),
    "lr": (_float(0.0, strict=True), 2.0),
    "steps": (_int(1, 1_000_000), 100),
    "probe_size": (_int(2, 4096), 64),
    "bias_scale": (_float(0.0), 0.1),
}


class NTKMLP(nn.Module):
    """An MLP in the NTK parameterisation: ``h ↦ φ(W h / √fan_in + β b)``, entries of W, b ~ N(0, 1).

    Args:
        in_features: input size (inputs are flattened). width: hidden width.
        hidden_layers: number of hidden layers. out_features: outputs.
        activation: "tanh" or "relu". bias_scale: β (Jacot et al. 2018 use 0.1).

    Example:
        >>> NTKMLP(4, 16)(torch.randn(3, 4)).shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        hidden_layers: int = 1,
        out_features: int = 1,
        activation: str = "tanh",
        bias_scale: float = 0.1,
    ) -> None:
        super().__init__()
        sizes = [in_features] + [width] * hidden_layers + [out_features]
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(b, a)) for a, b in zip(sizes, sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.randn(b)) for b in sizes[1:])
        self.activation = activation
        self.bias_scale = bias_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        act = _ACTIVATIONS[self.activation]
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = h @ weight.T / math.sqrt(weight.shape[1]) + self.bias_scale * bias
            if index < len(self.weights) - 1:
                h = act(h)
        return h


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def run_kind(config: Mapping[str, Any]):
    """Train an NTK-parameterised MLP by full-batch GD; weight change, NTK drift, linearisation gap."""
    from deepscope.curvature import ntk, ntk_dynamics
    from deepscope.sweep.trial import trial_data

    params = config["params"]
    dataset = trial_data(config)
    x = dataset.x_train.float().flatten(1)
    targets = torch.where(dataset.y_train < dataset.num_classes / 2, 1.0, -1.0).reshape(-1, 1)
    probe = dataset.x_test[: params["probe_size"]].float().flatten(1)
    torch.manual_seed(config["seed"])
    model = NTKMLP(
        x.shape[1],
        params["width"],
        params["hidden_layers"],
        activation=params["activation"],
        bias_scale=params["bias_scale"],
    )
    theta0 = _flat(model)
    kernel0 = ntk(model, probe).kernel
    linearised = ntk_dynamics(model, x, targets, lr=params["lr"], steps=params["steps"], n_checkpoints=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"])
    for _ in range(params["steps"]):  # the same GD as ntk_dynamics' copy, on our own model
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), targets).backward()
        optimizer.step()
    kernel = ntk(model, probe).kernel
    actual, predicted = np.asarray(linearised.actual_loss), np.asarray(linearised.predicted_loss)
    with torch.no_grad():
        test_x = dataset.x_test.float().flatten(1)
        test_t = torch.where(dataset.y_test < dataset.num_classes / 2, 1.0, -1.0).reshape(-1, 1)
        test_error = float((torch.sign(model(test_x)) != test_t).float().mean())
    metrics = {
        "weight_change": (float((_flat(model) - theta0).norm() / theta0.norm()), None),
        "ntk_drift": (float((kernel - kernel0).norm() / kernel0.norm()), None),
        "train_ntk_drift": (linearised.kernel_drift[-1], None),
        "linearisation_gap": (float(np.abs(actual - predicted).max() / actual[0]), None),
        "final_loss": (float(actual[-1]), None),
        "linearised_final_loss": (float(predicted[-1]), None),
        "test_error": (test_error, None),
        "parameters": (float(theta0.numel()), None),
    }
    history = {"actual_loss": actual.tolist(), "linearised_loss": predicted.tolist()}
    return metrics, history, None


# ----------------------------------------------------------------------------------- the spec
def spec(budget: str) -> dict[str, Any]:
    """Small: widths 32..2048 (7 points) x 3 seeds, 128 MNIST-1D examples, 100 GD steps of η = 2 (the
    linearised dynamics are stable up to η ≈ 4.8 here). Full: widths 16..16384 (11 points) x 5 seeds,
    256 examples, 200 steps."""
    small = budget == "small"
    widths = [2**k for k in (range(5, 12) if small else range(4, 15))]
    return {
        "name": f"{NAME}-{budget}",
        "description": TITLE,
        "kind": NAME,
        "seeds": [0, 1, 2] if small else [0, 1, 2, 3, 4],
        "dataset": {"name": "mnist1d", "n_samples": 2000, "test_fraction": 0.5, "seed": 0},
        "data": {"train_size": 128 if small else 256},
        "train": {"max_epochs": 1},
        "params": {"steps": 100 if small else 200, "lr": 2.0, "probe_size": 64},
        "search": {"grid": {_WIDTH: widths}},
    }


def protocol(spec: Mapping[str, Any]) -> str:
    params = spec["params"]
    widths = spec["search"]["grid"].get(_WIDTH, [params["width"]])
    return (
        f"NTK-parameterised MLPs ({params['hidden_layers']} hidden layer(s), {params['activation']}, β = "
        f"{params['bias_scale']}) of widths {widths}, seeds {spec['seeds']}, trained by full-batch gradient descent "
        f"(η = {params['lr']}, {params['steps']} steps) on the squared loss to ±1 targets (classes < C/2 vs the rest) "
        f"of {spec['data']['train_size']} {spec['dataset']['name']} examples. Per run: ‖θ_T−θ₀‖/‖θ₀‖; the relative "
        f"Frobenius change of the empirical NTK on {params['probe_size']} held-out inputs; the largest gap between "
        "the training loss and that of the linearised network, over the initial loss."
    )


def check(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    widths = spec["search"]["grid"].get(_WIDTH)
    if not isinstance(widths, list) or len(widths) < 3:
        problems.append((f"search.grid.{_WIDTH}", f"expected a grid of at least 3 widths, got {widths!r}"))
    problems += _ignored_grid_keys(spec)
    if len(spec["seeds"]) < 2:
        problems.append(("seeds", f"expected at least 2 seeds (spread at each width), got {len(spec['seeds'])}"))
    return problems


def _ignored_grid_keys(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Searched ``train.*`` settings: this kind trains by its own ``params``, so they would change nothing."""
    return [
        (
            f"search.grid.{path}",
            f"expected a setting this experiment uses: its trial kind trains with params.*, not {path}",
        )
        for path in spec["search"]["grid"]
        if path.startswith("train.")
    ]


# ----------------------------------------------------------------------------------- the analysis
def loglog_slope(widths, values) -> tuple[float, float]:
    """Least-squares slope of log(value) on log(width) and its standard error (NaN if undefined)."""
    x, y = np.log(np.asarray(widths, float)), np.asarray(values, float)
    keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
    x, y = x[keep], np.log(y[keep])
    if len(x) < 3 or np.ptp(x) == 0:
        return math.nan, math.nan
    from scipy import stats

    fit = stats.linregress(x, y)
    return float(fit.slope), float(fit.stderr)


def decide_verdict(frame) -> tuple[Verdict, list[dict[str, Any]], dict[str, Any]]:
    """The verdict, the per-width table and the numbers from a frame with params.width, seed, METRICS."""
    widths = frame[_WIDTH].to_numpy(float)
    tests: dict[str, Any] = {}
    for metric in METRICS:
        rho, p = spearman_one_sided(widths, frame[metric].to_numpy(float), negative=True)
        _, p_up = spearman_one_sided(widths, frame[metric].to_numpy(float))
        slope, slope_se = loglog_slope(widths, frame[metric])
        tests[metric] = {"spearman_rho": rho, "p_value": p, "p_increasing": p_up, "slope": slope, "slope_se": slope_se}
    rows = []
    for width, group in frame.groupby(_WIDTH, sort=True):
        row: dict[str, Any] = {"width": int(width), "runs": len(group)}
        for metric in METRICS:
            row[metric], row[f"{metric} ± se"] = mean_se(list(group[metric]))
        rows.append(row)
    p_all = max(t["p_value"] for t in tests.values())
    if all(t["p_value"] < ALPHA and t["spearman_rho"] < 0 for t in tests.values()):
        held: bool | None = True
    elif any(t["p_increasing"] < ALPHA for t in tests.values()):
        held = False
    else:
        held = None
    detail = "; ".join(
        f"{metric}: ρ = {t['spearman_rho']:.2f} (p = {t['p_value']:.2g}), log-log slope "
        f"{t['slope']:.2f} ± {t['slope_se']:.2f}"
        for metric, t in tests.items()
    )
    runs = len(frame)
    verdict = Verdict(
        held=held,
        test=(
            f"one-sided Spearman rank correlation (ρ < 0) of each of {', '.join(METRICS)} with width over {runs} "
            f"runs ({frame[_WIDTH].nunique()} widths x {frame['seed'].nunique()} seeds); all three must hold "
            "(intersection-union: the largest p)"
        ),
        statistic=max(t["spearman_rho"] for t in tests.values()),
        p_value=float(p_all),
        alpha=ALPHA,
        detail=detail + " (theory, one hidden layer: −1/2 for the weight change, −1 for the kernel drift).",
    )
    return verdict, rows, tests


def headline_figure(frame, tests: Mapping[str, Any]) -> str:
    """Log-log: the three lazy-training measures vs width, per-seed points, means and the theory's slopes."""
    from deepscope._figures import new_figure
    from deepscope.sweep._report_figures import inline_svg

    figure, axis = new_figure(7.0, 4.2)
    colours = dict(zip(METRICS, ("#2457a6", "#c26a00", "#2e8b57")))
    labels = {
        "weight_change": "‖θ−θ₀‖/‖θ₀‖",
        "ntk_drift": "NTK drift ‖Θ−Θ₀‖/‖Θ₀‖",
        "linearisation_gap": "max |L − L_lin| / L₀",
    }
    widths = np.asarray(sorted(frame[_WIDTH].unique()), float)
    for metric in METRICS:
        colour = colours[metric]
        axis.scatter(frame[_WIDTH], frame[metric], s=9, color=colour, alpha=0.5)
        means = [frame.loc[frame[_WIDTH] == w, metric].mean() for w in widths]
        slope = tests[metric]["slope"]
        axis.plot(widths, means, "o-", color=colour, ms=4, label=f"{labels[metric]} (slope {slope:.2f})")
        power = _THEORY_SLOPE.get(metric)
        if power is not None and means and means[0] > 0:
            axis.plot(widths, means[0] * (widths / widths[0]) ** power, ":", color=colour, lw=1)
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("width")
    axis.set_ylabel("relative change after training")
    axis.set_title("lazy training; dotted: theory, ∝ 1/√width (weights) and 1/width (kernel)", fontsize=9)
    axis.legend(fontsize=7)
    return inline_svg(figure)


def curves_figure(frame, histories: Mapping[str, Mapping[str, Any]]) -> str | None:
    """|L_t − L_t^lin| / L₀ against the step, one seed, one line per width (log scale)."""
    from deepscope._figures import new_figure
    from deepscope.sweep._report_figures import inline_svg

    seed = frame["seed"].min()
    runs = frame[frame["seed"] == seed].sort_values(_WIDTH)
    runs = [(int(w), histories.get(k)) for w, k in zip(runs[_WIDTH], runs["key"]) if histories.get(k)]
    if not runs:
        return None
    figure, axis = new_figure(7.0, 3.6)
    for index, (width, run) in enumerate(runs):
        actual, linear = np.asarray(run["actual_loss"]), np.asarray(run["linearised_loss"])
        shade = index / max(1, len(runs) - 1)
        gap = np.maximum(np.abs(actual - linear) / actual[0], 1e-8)
        axis.plot(gap, color=(0.85 * shade, 0.3, 0.8 * (1 - shade)), lw=1.2, label=f"width {width}")
    axis.set_yscale("log")
    axis.set_ylim(bottom=1e-5)  # both start from the same weights: the gap at step 0 is round-off
    axis.set_xlabel("gradient-descent step")
    axis.set_ylabel("|L − L_lin| / L₀")
    axis.set_title(f"network vs its linearisation at initialisation (seed {seed})", fontsize=9)
    axis.legend(fontsize=7, ncol=2)
    return inline_svg(figure)


def _histories(frame, store) -> dict[str, dict[str, Any]]:
    if store is None:
        return {}
    from deepscope.sweep import SweepStore

    with SweepStore(store, create=False) as sweep:
        return {key: history for key in frame["key"] if (history := sweep.history(key))}


def analyse(frame, spec: Mapping[str, Any], store=None) -> Outcome:
    """Verdict by one-sided Spearman tests against width (see the module docstring)."""
    verdict, rows, tests = decide_verdict(frame)
    figures = [
        (
            headline_figure(frame, tests),
            "Relative weight change, NTK drift on held-out inputs and the network-vs-linearisation loss gap "
            "against width (log-log; dots: seeds, lines: means; dotted: the theory's 1/√width and 1/width "
            "from the narrowest mean).",
        )
    ]
    curves = curves_figure(frame, _histories(frame, store))
    if curves is not None:
        figures.append(
            (
                curves,
                "Gap between the training loss of the network and that of its linearisation around "
                "initialisation (the NTK dynamics of deepscope.curvature.ntk_dynamics), relative to the initial "
                "loss, per step, one seed: it shrinks as the width grows.",
            )
        )
    columns = list(rows[0]) if rows else []
    numbers = {"tests": tests, "per_width": rows}
    return Outcome(verdict, figures, [("Lazy-training measures per width", columns, rows)], numbers, [])
