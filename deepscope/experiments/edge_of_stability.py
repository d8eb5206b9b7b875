"""Edge of stability (Cohen et al. 2021): full-batch gradient descent drives the sharpness to 2/η.

Gradient descent with step size η on a quadratic is stable only while the top Hessian eigenvalue
(the *sharpness*) stays below ``2/η``. Cohen, Kaur, Li, Kolter & Talwalkar (2021) observed that on
neural networks full-batch GD first *sharpens* (the sharpness rises: progressive sharpening) until
it reaches ``2/η``, and then hovers there (the edge of stability) while the loss keeps decreasing
over long time scales, non-monotonically.

The trial kind ``edge_of_stability`` trains the spec's MLP by plain full-batch GD (no momentum) on
the mean squared error to one-hot labels and measures the sharpness every ``sharpness_every``
steps with the dynamics :class:`~deepscope.dynamics.Monitor` (Lanczos, warm-started from the
previous top eigenvector). Its statistic is the median sharpness over the last half of training
divided by ``2/η`` (:func:`late_sharpness_ratio`).

Verdict: for every η, the mean ratio over seeds lies in the window [0.8, 1.2] by the two one-sided
t-tests of equivalence (TOST, Schuirmann 1987; the claim for all η at once is an
intersection-union test, so its p-value is the largest of them), and in every run the loss rose at
some step yet ended below its start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope.experiments._base import Outcome, Verdict
from deepscope.experiments._stats import mean_se
from deepscope.sweep.spec import _float, _int

NAME = "edge_of_stability"
TITLE = "Edge of stability"
CLAIM = (
    "Under full-batch gradient descent with step size η the sharpness (top Hessian eigenvalue) rises "
    "until it reaches 2/η and then hovers there, while the training loss keeps decreasing non-monotonically."
)
REFERENCES = [
    "Cohen, Kaur, Li, Kolter & Talwalkar (2021), Gradient descent on neural networks typically occurs "
    "at the edge of stability, ICLR",
    "Schuirmann (1987), A comparison of the two one-sided tests procedure ... for assessing the "
    "equivalence of average bioavailability",
]
WINDOW = (0.8, 1.2)
ALPHA = 0.05
_LR = "params.lr"

PARAMS = {
    "lr": (_float(0.0, strict=True), 1.0),
    "steps": (_int(10, 1_000_000), 1000),
    "sharpness_every": (_int(1), 10),
    "sharpness_iters": (_int(2, 1000), 20),
}


# ----------------------------------------------------------------------------------- the trial
def late_sharpness_ratio(measured_steps: Sequence[int], sharpness: Sequence[float], steps: int, lr: float) -> float:
    """Median sharpness over the last half of training (steps ``>= steps/2``) divided by ``2/lr``.

    NaN when nothing was measured in the last half. Example: a curve that sits at ``2/lr`` from
    the middle on gives 1.0; one that stays at ``1/lr`` gives 0.5.
    """
    late = [s for step, s in zip(measured_steps, sharpness) if step >= steps / 2 and math.isfinite(s)]
    if not late:
        return math.nan
    return float(np.median(late)) / (2.0 / lr)


def loss_increases(loss: Sequence[float]) -> int:
    """How many steps raised the training loss (``loss[t+1] > loss[t]``)."""
    values = np.asarray(loss, dtype=float)
    return int((np.diff(values) > 0).sum())


def run_kind(config: Mapping[str, Any]):
    """Full-batch GD on the spec's MLP with the MSE to one-hot labels; sharpness every few steps."""
    from deepscope.dynamics import Monitor
    from deepscope.models import build
    from deepscope.sweep.trial import state_bytes, trial_data

    params = config["params"]
    lr, steps = params["lr"], params["steps"]
    dataset = trial_data(config)
    x = dataset.x_train.float()
    targets = nn.functional.one_hot(dataset.y_train.long(), dataset.num_classes).float()
    torch.manual_seed(config["seed"])
    spec_model = config["model"]
    model = build(
        "mlp",
        dataset.input_shape,
        dataset.num_classes,
        widths=[spec_model["width"]] * spec_model["depth"],
        activation=spec_model["activation"],
    )
    monitor = Monitor(
        model,
        nn.functional.mse_loss,
        every=params["sharpness_every"],
        max_samples=len(x),
        sharpness_max_iter=min(params["sharpness_iters"], sum(p.numel() for p in model.parameters())),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses: list[float] = []
    diverged = False
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), targets)
        value = float(loss.detach())
        if not math.isfinite(value) or value > 1e6:
            diverged = True
            break
        loss.backward()
        optimizer.step()
        losses.append(value)
        monitor.step(loss=losses[-1], lr=lr, inputs=x, targets=targets)
    history = monitor.result()
    with torch.no_grad():
        final = float(nn.functional.mse_loss(model(x), targets))
        train_error = float((model(x).argmax(1) != dataset.y_train).float().mean())
    ratio = late_sharpness_ratio(history.measured_step, history.sharpness, steps, lr)
    metrics = {
        "sharpness_ratio": (ratio, None),
        "late_sharpness": (ratio * 2.0 / lr, None),
        "two_over_lr": (2.0 / lr, None),
        "max_sharpness": (max(history.sharpness, default=math.nan), None),
        "initial_loss": (losses[0] if losses else math.nan, None),
        "final_loss": (final if math.isfinite(final) else math.nan, None),
        "loss_increases": (float(loss_increases(losses)), None),
        "diverged": (float(diverged), None),
        "train_error": (train_error, None),
    }
    record = {
        "lr": lr,
        "loss": losses,
        "measured_step": list(history.measured_step),
        "sharpness": [float(s) for s in history.sharpness],
    }
    return metrics, record, state_bytes(model)


# ----------------------------------------------------------------------------------- the spec
def spec(budget: str) -> dict[str, Any]:
    """Small: a 2x64 tanh MLP on 500 MNIST-1D examples, η in {1, 1.5, 2} (2/η above the initial
    sharpness, about 0.7, and below what the net sharpens to), 1000 steps, 3 seeds (about a minute
    of CPU). Full: 6 values of η from 1 to 2.25, 2000 steps, 5 seeds (30 runs; about 7 minutes of
    CPU, so it also runs on a laptop)."""
    small = budget == "small"
    return {
        "name": f"{NAME}-{budget}",
        "description": TITLE,
        "kind": NAME,
        "seeds": [0, 1, 2] if small else [0, 1, 2, 3, 4],
        "dataset": {"name": "mnist1d", "n_samples": 2000, "test_fraction": 0.5, "seed": 0},
        "data": {"train_size": 500},
        "model": {"arch": "mlp", "width": 64, "depth": 2, "activation": "tanh"},
        "train": {"optimizer": "sgd", "momentum": 0.0, "max_epochs": 1},
        "params": {"steps": 1000 if small else 2000, "sharpness_every": 10, "sharpness_iters": 20},
        "search": {"grid": {_LR: [1.0, 1.5, 2.0] if small else [1.0, 1.25, 1.5, 1.75, 2.0, 2.25]}},
    }


def protocol(spec: Mapping[str, Any]) -> str:
    model, params = spec["model"], spec["params"]
    lrs = spec["search"]["grid"].get(_LR, [params["lr"]])
    return (
        f"Full-batch gradient descent (no momentum) for {params['steps']} steps on "
        f"{spec['data']['train_size']} examples of {spec['dataset']['name']}, a {model['depth']}x{model['width']} "
        f"{model['activation']} MLP, mean squared error to one-hot labels; step sizes η in {lrs}, seeds "
        f"{spec['seeds']}. Sharpness by Lanczos (at most {params['sharpness_iters']} Hessian-vector products, "
        f"warm-started) every {params['sharpness_every']} steps on the whole training set. Statistic per run: "
        "the median sharpness over the last half of training divided by 2/η."
    )


def check(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    if len(spec["seeds"]) < 3:
        problems.append(("seeds", f"expected at least 3 seeds for the per-η t-tests, got {len(spec['seeds'])}"))
    lrs = spec["search"]["grid"].get(_LR)
    if not isinstance(lrs, list) or len(lrs) < 2:
        problems.append((f"search.grid.{_LR}", f"expected a grid of at least 2 step sizes, got {lrs!r}"))
    params = spec["params"]
    if params["steps"] < 4 * params["sharpness_every"]:
        problems.append(
            (
                "params.sharpness_every",
                f"expected at most steps/4 = {params['steps'] // 4} (two measurements in the last half), "
                f"got {params['sharpness_every']}",
            )
        )
    problems += _ignored_grid_keys(spec)
    if spec["model"]["arch"] != "mlp":
        problems.append(("model.arch", f"expected 'mlp', got {spec['model']['arch']!r}"))
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
def _equivalence(ratios: Sequence[float]) -> tuple[float, float, float]:
    """TOST p-value for WINDOW[0] < mean < WINDOW[1], and the one-sided p-values of lying outside."""
    from scipy import stats

    values = np.asarray([r for r in ratios if math.isfinite(r)], dtype=float)
    low, high = WINDOW
    if len(values) < 2:
        return 1.0, 1.0, 1.0
    if np.ptp(values) == 0:  # no spread: the t statistic is undefined, the sample decides
        inside = low < values[0] < high
        return (0.0 if inside else 1.0), (0.0 if values[0] < low else 1.0), (0.0 if values[0] > high else 1.0)
    above_low = stats.ttest_1samp(values, low, alternative="greater").pvalue
    below_high = stats.ttest_1samp(values, high, alternative="less").pvalue
    below_low = stats.ttest_1samp(values, low, alternative="less").pvalue
    above_high = stats.ttest_1samp(values, high, alternative="greater").pvalue
    return float(max(above_low, below_high)), float(below_low), float(above_high)


def decide_verdict(frame) -> tuple[Verdict, list[dict[str, Any]]]:
    """The verdict and the per-η table from a frame with params.lr, seed and the trial's metrics."""
    rows, p_values, outside = [], [], []
    for lr, group in frame.groupby(_LR, sort=True):
        ratios = [float(v) for v in group["sharpness_ratio"]]
        mean, se = mean_se(ratios)
        p_equivalent, p_low, p_high = _equivalence(ratios)
        p_values.append(p_equivalent)
        outside.append(min(p_low, p_high))
        rows.append(
            {
                "η": float(lr),
                "2/η": 2.0 / float(lr),
                "late sharpness / (2/η)": mean,
                "± se": se,
                "TOST p": p_equivalent,
                "loss increases (mean)": float(group["loss_increases"].mean()),
                "final / initial loss": float((group["final_loss"] / group["initial_loss"]).mean()),
                "runs": len(group),
            }
        )
    increases = frame["loss_increases"].to_numpy(float)
    decreased = (frame["final_loss"] < frame["initial_loss"]).to_numpy() & (frame["diverged"] == 0).to_numpy()
    non_monotone = bool((increases > 0).all())
    overall = bool(decreased.all())
    p_all = max(p_values) if p_values else 1.0
    if p_all < ALPHA and non_monotone and overall:
        held: bool | None = True
    elif min(outside, default=1.0) < ALPHA or not overall:
        held = False
    else:
        held = None
    ratios_text = ", ".join(f"η={r['η']:g}: {r['late sharpness / (2/η)']:.3f} ± {r['± se']:.3f}" for r in rows)
    detail = (
        f"late-phase sharpness / (2/η) {ratios_text}; window [{WINDOW[0]}, {WINDOW[1]}], largest TOST p = "
        f"{p_all:.3g}; the loss rose at some step in {int((increases > 0).sum())}/{len(frame)} runs and ended "
        f"below its start in {int(decreased.sum())}/{len(frame)}."
    )
    seeds = frame["seed"].nunique()
    verdict = Verdict(
        held=held,
        test=(
            f"two one-sided t-tests of equivalence (TOST) that the mean ratio lies in [{WINDOW[0]}, {WINDOW[1]}], "
            f"per η over {seeds} seeds, all η at once (intersection-union: largest p); plus loss non-monotone "
            "and decreased in every run"
        ),
        statistic=float(np.nanmean([r["late sharpness / (2/η)"] for r in rows])) if rows else math.nan,
        p_value=float(p_all),
        alpha=ALPHA,
        detail=detail,
    )
    return verdict, rows


def _histories(frame, store) -> dict[str, dict[str, Any]]:
    if store is None:
        return {}
    from deepscope.sweep import SweepStore

    with SweepStore(store, create=False) as sweep:
        return {key: history for key in frame["key"] if (history := sweep.history(key))}


def headline_figure(frame, histories: Mapping[str, Mapping[str, Any]]) -> str:
    """Sharpness vs step per η with dashed 2/η lines (top) and the first seed's training loss (bottom)."""
    from deepscope._figures import new_figure
    from deepscope.sweep._report_figures import inline_svg

    figure, axes = new_figure(8.0, 5.6, nrows=2)
    colours = ["#2457a6", "#c26a00", "#2e8b57", "#8b2252", "#6a5acd", "#b8860b", "#008b8b", "#444444"]
    for index, (lr, group) in enumerate(frame.groupby(_LR, sort=True)):
        colour = colours[index % len(colours)]
        for position, key in enumerate(group["key"]):
            run = histories.get(key)
            if not run:
                continue
            label = f"η = {lr:g}" if position == 0 else None
            axes[0].plot(run["measured_step"], run["sharpness"], color=colour, lw=1, alpha=0.8, label=label)
            if position == 0:  # one loss curve per η keeps the page small (every run is in the store)
                axes[1].semilogy(np.maximum(run["loss"], 1e-12), color=colour, lw=0.8, alpha=0.8)
        axes[0].axhline(2.0 / lr, color=colour, ls="--", lw=1.2)
    axes[0].set_ylabel("sharpness λ_max")
    axes[0].set_title("sharpness rises to 2/η (dashed) and hovers there", fontsize=9)
    if axes[0].get_legend_handles_labels()[1]:
        axes[0].legend(fontsize=7)
    axes[1].set_ylabel("training loss (MSE)")
    axes[1].set_xlabel("gradient-descent step")
    return inline_svg(figure)


def analyse(frame, spec: Mapping[str, Any], store=None) -> Outcome:
    """Verdict by TOST per η (see the module docstring); figure from the per-run histories."""
    verdict, rows = decide_verdict(frame)
    figures = [
        (
            headline_figure(frame, _histories(frame, store)),
            "Sharpness (top Hessian eigenvalue) during full-batch gradient descent, one colour per step size η, "
            "one line per seed; dashed: 2/η. Bottom: the training loss (first seed of each η).",
        )
    ]
    columns = list(rows[0]) if rows else []
    numbers = {
        "window": list(WINDOW),
        "per_lr": rows,
        "diverged_runs": int(frame["diverged"].sum()),
    }
    notes = [
        "The statistic is taken over the last half of training, so a run that reaches 2/η late counts its "
        "sharpening phase too; a ratio a little above 1 is what Cohen et al. report for the squared loss."
    ]
    return Outcome(verdict, figures, [("Late-phase sharpness per step size", columns, rows)], numbers, notes)
