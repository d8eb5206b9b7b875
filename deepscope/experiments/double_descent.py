"""Deep double descent (Belkin et al. 2019; Nakkiran et al. 2020): test error peaks at the interpolation threshold.

A one-hidden-layer ReLU MLP is trained on a fixed subset of ``N`` examples with a fraction of its
labels replaced by a wrong class (0, 10 and 20% label noise), for a grid of widths spanning the
interpolation threshold, with a fixed epoch budget (no stop rule) and no regularisation.

**Interpolation threshold.** The definition used here is Belkin et al.'s (2019) for a ``K``-class
model: the parameter count equal to ``N × K`` (training examples times classes: the number of
values the model must fit). The grid width whose parameter count is nearest to ``N × K`` (on a log
scale) is the *threshold width* ``w*``. The widths with at most ``N × K / 4`` parameters are the
*small* side, those with at least ``4 N × K`` the *large* side.

**Test.** For every run (noise level, seed) the peak height is

    h = e(w*) − max(min_{small} e(w), min_{large} e(w))

(``e``: final test error), positive when the error at the threshold exceeds the best error on both
sides. The claim holds when (1) at the highest noise level ``h > 0`` by a one-sided paired t-test
over seeds (``e(w*)`` paired with the larger of the two side minima of the same seed) and (2) ``h``
grows with the noise level: Spearman's ρ between noise and ``h`` over all runs, one-sided. Both at
α = 0.05 (an intersection–union test: no correction needed). It did not hold when the highest
noise level's peak is significantly negative.

Test error against epochs (epoch-wise double descent, Nakkiran et al. 2020) comes from every run's
per-epoch history and is drawn for the highest noise level.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.experiments._base import Outcome, Verdict
from deepscope.experiments._stats import decide, mean_se, paired_one_sided, spearman_one_sided

NAME = "double_descent"
TITLE = "Deep double descent"
CLAIM = (
    "Test error against model size rises to a peak near the interpolation threshold (parameters ≈ training "
    "examples × classes) and falls again beyond it; the peak grows with label noise."
)
REFERENCES = [
    "Belkin, Hsu, Ma & Mandal (2019), Reconciling modern machine-learning practice and the classical "
    "bias–variance trade-off, PNAS 116(32)",
    "Nakkiran, Kaplun, Bansal, Yang, Barak & Sutskever (2020), Deep double descent: where bigger models "
    "and more data hurt, ICLR",
    "Greydanus (2020), Scaling down deep learning (MNIST-1D), arXiv:2011.14439",
]
ALPHA = 0.05
SIDE = 4.0  # the small side has <= N·K / SIDE parameters, the large side >= SIDE · N·K
_WIDTH, _NOISE = "model.width", "data.label_noise"

_SMALL_WIDTHS = [4, 8, 16, 32, 48, 64, 96, 128, 256, 512]
_FULL_WIDTHS = [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096]


# deepscope.sweep.kinds lists "double_descent" as a trial kind: it is the default "train" trial (the
# experiment needs nothing else), so a spec naming it runs exactly what its "train" twin runs.
PARAMS: dict[str, Any] = {}


def run_kind(config: dict[str, Any]):
    """The default "train" trial (train, then the spec's analyses): (metrics, history, weights)."""
    from deepscope.sweep.trial import train_and_analyse

    weights, history, metrics, _, _ = train_and_analyse(config)
    return metrics, history, weights


def spec(budget: str) -> dict[str, Any]:
    """The sweep: widths × label noise × seeds. small: digits, N = 400; full: mnist1d, N = 4000."""
    if budget == "small":
        dataset = {"name": "digits", "test_fraction": 0.5}
        train_size, widths, seeds, epochs = 400, _SMALL_WIDTHS, [0, 1, 2], 300
    else:
        dataset = {"name": "mnist1d", "n_samples": 8000, "test_fraction": 0.5}
        train_size, widths, seeds, epochs = 4000, _FULL_WIDTHS, [0, 1, 2, 3, 4], 4000
    return {
        "name": f"{NAME}-{budget}",
        "description": "test error vs width and label noise around the interpolation threshold",
        "seeds": seeds,
        "dataset": dataset,
        "model": {"arch": "mlp", "depth": 1, "width": 64},
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 64, "max_epochs": epochs, "stop_loss": None},
        "data": {"train_size": train_size, "label_noise": 0.0},
        "search": {"grid": {_WIDTH: widths, _NOISE: [0.0, 0.1, 0.2]}},
    }


def _values(spec: dict[str, Any], path: str) -> list[Any]:
    section, key = path.split(".")
    return list(spec["search"]["grid"].get(path, [spec[section][key]]))


def _input_size(spec: dict[str, Any]) -> int | None:
    """Input features of the dataset (digits: 64, mnist1d: 40); None when unknown without loading it."""
    return {"digits": 64, "mnist1d": 40}.get(spec["dataset"]["name"])


def threshold_parameters(spec: dict[str, Any], classes: int = 10) -> int | None:
    """N × K: training examples times classes (None when ``data.train_size`` is unset)."""
    size = spec["data"]["train_size"]
    return None if size is None else size * classes


def mlp_parameters(width: int, inputs: int, classes: int = 10) -> int:
    """Parameters of a one-hidden-layer MLP: (inputs + 1)·width + (width + 1)·classes."""
    return (inputs + 1) * width + (width + 1) * classes


def check(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Refuse settings that cannot show a peak: too few seeds, no noise level > 0, no width on each side."""
    problems = []
    if len(spec["seeds"]) < 3:
        problems.append(("seeds", f"expected at least 3 seeds for the paired t-test, got {len(spec['seeds'])}"))
    noises = _values(spec, _NOISE)
    if len(noises) < 2 or max(noises) <= 0:
        problems.append(
            (f"search.grid.{_NOISE}", f"expected at least 2 label-noise levels, one of them > 0, got {noises}")
        )
    if spec["model"]["arch"] != "mlp" or spec["model"]["depth"] != 1:
        problems.append(("model", "expected a one-hidden-layer MLP (arch = 'mlp', depth = 1)"))
    if spec["data"]["train_size"] is None:
        problems.append(("data.train_size", "expected a training-set size N (the threshold is N × classes), got None"))
    widths = _values(spec, _WIDTH)
    inputs, threshold = _input_size(spec), threshold_parameters(spec)
    if len(widths) < 3:
        problems.append((f"search.grid.{_WIDTH}", f"expected at least 3 widths, got {widths}"))
    elif inputs is not None and threshold is not None:
        params = [mlp_parameters(w, inputs) for w in widths]
        small = [w for w, p in zip(widths, params) if p <= threshold / SIDE]
        large = [w for w, p in zip(widths, params) if p >= threshold * SIDE]
        near = [w for w, p in zip(widths, params) if threshold / 2 <= p <= threshold * 2]
        if not (small and large and near):
            problems.append(
                (
                    f"search.grid.{_WIDTH}",
                    f"expected widths with <= {threshold / SIDE:g} parameters, within a factor 2 of N×K = "
                    f"{threshold} and >= {threshold * SIDE:g} (width {widths} gives parameters {params})",
                )
            )
    if spec["train"]["stop_loss"] is not None:
        problems.append(("train.stop_loss", "expected None (a fixed epoch budget for every width)"))
    return problems


def protocol(spec: dict[str, Any]) -> str:
    recipe = spec["train"]
    return (
        f"{spec['dataset']['name']}, N = {spec['data']['train_size']} training examples, one-hidden-layer ReLU MLP "
        f"of widths {_values(spec, _WIDTH)}, label noise {_values(spec, _NOISE)} (a wrong class drawn uniformly, "
        f"different examples per seed), {recipe['optimizer']} lr {recipe['lr']}, batch {recipe['batch_size']}, "
        f"{recipe['max_epochs']} epochs, no stop rule, no weight decay; seeds {spec['seeds']}. Interpolation "
        f"threshold: parameters = N × K = {threshold_parameters(spec)}."
    )


def _column(frame, spec: dict[str, Any], path: str):
    if path in frame.columns:
        return frame[path]
    section, key = path.split(".")
    return [spec[section][key]] * len(frame)


def peak_heights(frame, threshold: float) -> dict[str, Any]:
    """Per (noise, seed): the error at the threshold width and the two side minima.

    ``frame`` needs the columns ``model.width``, ``data.label_noise``, ``seed``, ``parameters`` and
    ``test_error``. Returns the threshold width, the side widths and one row per run:
    ``{noise, seed, at_threshold, small_min, large_min, height}``.
    """
    widths = sorted({int(w) for w in frame[_WIDTH]})
    params = {int(w): float(p) for w, p in zip(frame[_WIDTH], frame["parameters"])}
    star = min(widths, key=lambda w: abs(math.log(params[w] / threshold)))
    small = [w for w in widths if params[w] <= threshold / SIDE]
    large = [w for w in widths if params[w] >= threshold * SIDE]
    rows = []
    for (noise, seed), group in frame.groupby([_NOISE, "seed"]):
        error = {int(w): float(e) for w, e in zip(group[_WIDTH], group["test_error"])}
        if star not in error or not any(w in error for w in small) or not any(w in error for w in large):
            continue
        small_min = min(error[w] for w in small if w in error)
        large_min = min(error[w] for w in large if w in error)
        height = error[star] - max(small_min, large_min)
        rows.append(
            {
                "noise": float(noise),
                "seed": int(seed),
                "at_threshold": error[star],
                "small_min": small_min,
                "large_min": large_min,
                "height": height,
            }  # fmt: skip
        )
    return {"threshold_width": star, "small_widths": small, "large_widths": large, "runs": rows}


def decide_peak(peaks: dict[str, Any], alpha: float = ALPHA) -> Verdict:
    """The verdict from :func:`peak_heights`: a peak at the highest noise, growing with noise."""
    runs = peaks["runs"]
    test = (
        "one-sided paired t-test over seeds (highest noise: error at the threshold width > the larger of the "
        "two side minima) and one-sided Spearman ρ (noise level vs peak height, over all runs)"
    )
    if not runs:
        return Verdict(None, test, math.nan, None, alpha, "no run has widths on both sides of the threshold")
    top = max(r["noise"] for r in runs)
    at_top = [r for r in runs if r["noise"] == top]
    a = [r["at_threshold"] for r in at_top]
    b = [max(r["small_min"], r["large_min"]) for r in at_top]
    if len(at_top) < 2:
        return Verdict(None, test, math.nan, None, alpha, f"only {len(at_top)} seed at noise {top}")
    differences = np.subtract(a, b)
    if np.allclose(differences, differences[0]):  # a constant difference: the t statistic is undefined
        t, p_peak = math.copysign(math.inf, differences[0]), (0.0 if differences[0] > 0 else 1.0)
    else:
        t, p_peak = paired_one_sided(a, b)
    p_opposite = 1.0 - p_peak
    rho, p_grow = spearman_one_sided([r["noise"] for r in runs], [r["height"] for r in runs])
    if not math.isfinite(rho):
        rho, p_grow = 0.0, 1.0
    height, height_se = mean_se(differences)
    peak_held = decide(height > 0, p_peak, alpha, p_opposite)
    grows = rho > 0 and p_grow < alpha
    held = True if peak_held is True and grows else (False if peak_held is False else None)
    detail = (
        f"at noise {top:g} the threshold width {peaks['threshold_width']} is {height:+.3f} ± {height_se:.3f} above "
        f"the best error on both sides (paired t = {t:.2f}, p = {p_peak:.3g}, {len(at_top)} seeds); "
        f"peak height vs noise: Spearman ρ = {rho:.2f}, p = {p_grow:.3g} over {len(runs)} runs"
    )
    return Verdict(held, test, float(t), float(max(p_peak, p_grow)), alpha, detail)


def _curves(frame, noise: float, column: str):
    sub = frame[frame[_NOISE] == noise]
    params, means, ses = [], [], []
    for _width, group in sorted(sub.groupby(_WIDTH), key=lambda item: item[0]):
        mean, se = mean_se(list(group[column]))
        params.append(float(group["parameters"].iloc[0]))
        means.append(mean)
        ses.append(0.0 if math.isnan(se) else se)
    return np.array(params), np.array(means), np.array(ses)


_COLOURS = ("#2457a6", "#c26a00", "#b3261e", "#2e8b57", "#7b4fa0")


def headline_svg(frame, threshold: float) -> str:
    """Test and train error vs parameters, one line per noise level, the threshold N·K marked."""
    from matplotlib.figure import Figure

    from deepscope.sweep._report_figures import inline_svg

    figure = Figure(figsize=(9.0, 3.4), layout="constrained")
    axes = figure.subplots(1, 2)
    for index, noise in enumerate(sorted(frame[_NOISE].unique())):
        colour = _COLOURS[index % len(_COLOURS)]
        for axis, column in zip(axes, ("test_error", "train_error")):
            x, mean, se = _curves(frame, noise, column)
            axis.plot(x, mean, "o-", ms=3, color=colour, label=f"label noise {noise:g}")
            axis.fill_between(x, mean - se, mean + se, color=colour, alpha=0.2, lw=0)
    for axis, label in zip(axes, ("test error", "train error")):
        axis.axvline(threshold, color="#444444", ls="--", lw=1)
        low, high = float(frame["parameters"].min()), float(frame["parameters"].max())
        axis.axvspan(min(low, threshold / SIDE), threshold / SIDE, color="#888888", alpha=0.08, lw=0)
        axis.axvspan(threshold * SIDE, max(high, threshold * SIDE), color="#888888", alpha=0.08, lw=0)
        axis.text(threshold, 0.98, " N·K", transform=axis.get_xaxis_transform(), va="top", fontsize=8)
        axis.set_xscale("log")
        axis.set_xlabel("parameters")
        axis.set_ylabel(label)
    axes[0].set_title("test error (mean ± s.e. over seeds)", fontsize=9)
    axes[1].set_title("train error: interpolation near N·K", fontsize=9)
    axes[0].legend(fontsize=7)
    return inline_svg(figure)


def epochs_svg(curves: dict[int, tuple[np.ndarray, np.ndarray]], noise: float) -> str:
    """Test error vs epoch (mean over seeds) for a few widths at one noise level."""
    from matplotlib.figure import Figure

    from deepscope.sweep._report_figures import inline_svg

    figure = Figure(figsize=(6.0, 3.2), layout="constrained")
    axis = figure.subplots()
    for index, (width, (epochs, error)) in enumerate(sorted(curves.items())):
        axis.plot(epochs, error, color=_COLOURS[index % len(_COLOURS)], lw=1.2, label=f"width {width}")
    axis.set_xscale("symlog", linthresh=10)
    axis.set_xlabel("epoch")
    axis.set_ylabel("test error")
    axis.set_title(f"epoch-wise: test error during training at label noise {noise:g}", fontsize=9)
    axis.legend(fontsize=7)
    return inline_svg(figure)


def _epoch_curves(frame, store: Path | None, noise: float, widths: list[int]):
    from deepscope.sweep import SweepStore

    out = {}
    if store is None or not Path(store).exists():
        return out
    with SweepStore(store, create=False) as sweep:
        for width in widths:
            rows = frame[(frame[_NOISE] == noise) & (frame[_WIDTH] == width)]
            errors = []
            for key in rows["key"]:
                history = sweep.history(key) or {}
                accuracy = history.get("test_accuracy") or []
                if accuracy and all(a is not None for a in accuracy):
                    errors.append(1.0 - np.asarray(accuracy, dtype=float))
            if errors:
                length = min(len(e) for e in errors)
                out[width] = (np.arange(length), np.mean([e[:length] for e in errors], axis=0))
    return out


def analyse(frame, spec: dict[str, Any], store: Path | None = None) -> Outcome:
    """Peak heights per run, the verdict, the width and epoch figures, the table of errors."""
    frame = frame.copy()
    frame[_WIDTH] = _column(frame, spec, _WIDTH)
    frame[_NOISE] = _column(frame, spec, _NOISE)
    threshold = float(threshold_parameters(spec))
    peaks = peak_heights(frame, threshold)
    verdict = decide_peak(peaks)
    top = float(frame[_NOISE].max())
    shown = sorted({min(frame[_WIDTH]), peaks["threshold_width"], max(frame[_WIDTH])})
    figures = [
        (
            headline_svg(frame, threshold),
            f"Test and train error vs parameters; dashed: the interpolation threshold N·K = {threshold:g}; "
            f"shaded: the small (≤ N·K/{SIDE:g}) and large (≥ {SIDE:g}·N·K) sides of the test.",
        ),
    ]
    curves = _epoch_curves(frame, store, top, shown)
    if curves:
        figures.append(
            (
                epochs_svg(curves, top),
                "Test error per epoch, mean over seeds, at the highest noise (epoch-wise double descent, "
                "Nakkiran et al. 2020); shown, not tested.",
            )
        )
    rows = []
    for (noise, width), group in frame.groupby([_NOISE, _WIDTH]):
        test, test_se = mean_se(list(group["test_error"]))
        train, train_se = mean_se(list(group["train_error"]))
        rows.append(
            {
                "label noise": noise,
                "width": int(width),
                "parameters": int(group["parameters"].iloc[0]),
                "train error": train,
                "train s.e.": train_se,
                "test error": test,
                "test s.e.": test_se,
            }  # fmt: skip
        )
    heights = {}
    for noise in sorted({r["noise"] for r in peaks["runs"]}):
        mean, se = mean_se([r["height"] for r in peaks["runs"] if r["noise"] == noise])
        heights[f"{noise:g}"] = {"mean": mean, "stderr": se}
    numbers = {
        "threshold_parameters": threshold,
        "threshold_width": peaks["threshold_width"],
        "small_side_widths": peaks["small_widths"],
        "large_side_widths": peaks["large_widths"],
        "peak_height_by_noise": heights,
        "runs": peaks["runs"],
    }
    table_rows = [{"label noise": k, "peak height": v["mean"], "s.e.": v["stderr"]} for k, v in heights.items()]
    tables = [
        (
            "Peak height h = e(w*) − max(side minima), mean over seeds",
            ["label noise", "peak height", "s.e."],
            table_rows,
        ),
        ("Final errors, mean and standard error over seeds", list(rows[0]) if rows else [], rows),
    ]
    notes = [
        f"Threshold width w* = {peaks['threshold_width']} (parameters nearest N·K = {threshold:g}); small side: "
        f"widths {peaks['small_widths']}; large side: widths {peaks['large_widths']}."
    ]
    return Outcome(verdict, figures, tables, numbers, notes)
