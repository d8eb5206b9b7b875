"""Linear regions through training and depth (Hanin & Rolnick 2019), on lines through mnist1d test points.

Hanin & Rolnick (2019) prove that for a ReLU network at (He-type) initialisation the expected number
of regions a 1-D line crosses per unit length is about (number of neurons N) × (a constant set by the
gradient scale), whatever the depth; the worst-case counts (Montúfar et al. 2014; Serra et al. 2018)
grow exponentially with depth. They then observe the same after training.

Trial kind ``linear_regions``: an MLP with ``depth`` hidden ReLU layers of ``neurons // depth`` units
(so N is fixed across depths) is built from the trial seed; the exact partition of ``lines`` segments
between pairs of test points (the same pairs for every trial, drawn from the dataset seed) is
computed with :func:`deepscope.expressivity.linear_regions` at initialisation and again after
``train_epochs`` epochs of the spec's training recipe (optimizer, lr, batch size). The Serra upper
bound of a line is :func:`deepscope.expressivity.capacity.serra_upper_bound` with input dimension 1
(a network restricted to a line is a network of one input).

Verdict (α = 0.05, every run a (N, depth, seed) cell, at initialisation and after training):

1. density grows with N: OLS ``density = a + b N``, one-sided t-test of ``b > 0``;
2. not exponentially with depth: OLS ``log density = c_N + s · depth`` (one intercept per N),
   one-sided t-test of ``s < log 2`` (H0: at least a doubling per layer at fixed N, the slowest
   exponential growth the worst case allows — it multiplies by about width+1 per layer);
3. far below the worst case: every run at the grid's deepest depth (>= 2) crosses fewer than 10% of
   its Serra bound (a depth-1 network can reach its bound N + 1; the bound then grows like
   (width + 1)^depth while the counts stay near N).

The claim held when all four tests reject (intersection-union test: p = the largest p-value) and (3)
holds; it did not hold when a test is significant the other way or (3) fails.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from deepscope.experiments._base import Outcome, Verdict
from deepscope.experiments._stats import mean_se
from deepscope.sweep.spec import _float, _int

__all__ = ["NAME", "TITLE", "CLAIM", "REFERENCES", "PARAMS", "protocol", "spec", "check", "run_kind", "analyse"]

NAME = "linear_regions"
TITLE = "Linear regions through training and depth"
CLAIM = (
    "The number of linear regions a ReLU network cuts a line through the data into grows with the number of "
    "neurons, not exponentially with depth, at initialisation and after training — far below the worst-case "
    "(Serra) bound."
)
REFERENCES = [
    "Hanin & Rolnick 2019, Complexity of linear regions in deep networks (ICML)",
    "Hanin & Rolnick 2019, Deep ReLU networks have surprisingly few activation patterns (NeurIPS)",
    "Serra, Tjandraatmadja & Ramalingam 2018, Bounding and counting linear regions of deep neural networks (ICML)",
]
PARAMS = {
    "neurons": (_int(2, 100_000), 64),
    "depth": (_int(1, 64), 2),
    "train_epochs": (_int(0, 100_000), 20),
    "lines": (_int(1, 10_000), 8),
    "bound_fraction": (_float(0.0, 1.0, strict=True), 0.1),
}
ALPHA = 0.05
_SLOPE_NULL = math.log(2.0)  # H0 of test 2: log-density grows by >= log 2 per layer at fixed N


def spec(budget: str) -> dict[str, Any]:
    """The sweep: N x depth grid (width = N / depth), seeds; small = 27 runs on mnist1d."""
    small = budget == "small"
    return {
        "name": f"{NAME}-{budget}",
        "description": "Region density on lines between test points vs neurons and depth, at init and trained.",
        "kind": NAME,
        "seeds": [0, 1, 2] if small else [0, 1, 2, 3, 4],
        "dataset": {"name": "mnist1d", "n_samples": 2000 if small else 10_000, "test_fraction": 0.5},
        "data": {"train_size": 1000 if small else None},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "max_epochs": 1, "stop_loss": None},
        "params": {"train_epochs": 40 if small else 100, "lines": 12 if small else 32},
        "search": {
            "grid": {
                "params.neurons": [32, 64, 128] if small else [64, 128, 256, 512],
                "params.depth": [1, 2, 4] if small else [1, 2, 4, 8],
            }
        },
    }


def _values(spec: dict[str, Any], key: str) -> list[Any]:
    grid = spec["search"]["grid"].get(f"params.{key}")
    return list(grid) if isinstance(grid, list) else [spec["params"][key]]


def check(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Refuse grids that cannot test the claim: < 3 neuron counts, < 2 depths, N not divisible by depth."""
    problems = []
    if spec.get("kind") != NAME:
        return [("kind", f"expected {NAME!r}, got {spec.get('kind', 'train')!r}")]
    if spec["search"]["kind"] != "grid":
        problems.append(("search.kind", "expected 'grid' (the tests compare fixed neuron counts across depths)"))
    neurons, depths = _values(spec, "neurons"), _values(spec, "depth")
    if len(set(neurons)) < 3:
        problems.append(("search.grid.params.neurons", f"expected at least 3 neuron counts, got {neurons!r}"))
    if len(set(depths)) < 2:
        problems.append(("search.grid.params.depth", f"expected at least 2 depths, got {depths!r}"))
    bad = [(n, d) for n in neurons for d in depths if isinstance(n, int) and isinstance(d, int) and n % d]
    if bad:
        problems.append(("search.grid.params.neurons", f"expected every N divisible by every depth, got {bad[:3]!r}"))
    if len(spec["seeds"]) < 2:
        problems.append(
            ("seeds", f"expected at least 2 seeds (the regressions need replicates), got {spec['seeds']!r}")
        )
    if spec["params"]["lines"] < 2:
        problems.append(("params.lines", f"expected at least 2 lines, got {spec['params']['lines']!r}"))
    return problems


def protocol(spec: dict[str, Any]) -> str:
    neurons, depths, p = _values(spec, "neurons"), _values(spec, "depth"), spec["params"]
    return (
        f"ReLU MLPs on {spec['dataset']['name']} with N = {neurons} hidden neurons split over depth {depths} "
        f"(width N / depth, PyTorch's default initialisation), {len(spec['seeds'])} seeds. Exact region counts on "
        f"{p['lines']} segments between pairs of test points (the same for every run), at initialisation and after "
        f"{p['train_epochs']} epochs of {spec['train']['optimizer']} (lr {spec['train']['lr']}, batch "
        f"{spec['train']['batch_size']}). Serra bound of a line: serra_upper_bound(1, widths)."
    )


def run_kind(config: dict[str, Any]):
    """One network: region densities on the lines at init and after training (a pure function of config)."""
    from deepscope.expressivity import linear_regions
    from deepscope.expressivity.capacity import serra_upper_bound
    from deepscope.models import build
    from deepscope.sweep.trial import train_model, trial_data

    params = config["params"]
    neurons, depth = params["neurons"], params["depth"]
    width = max(1, neurons // depth)
    dataset = trial_data(config)
    generator = torch.Generator().manual_seed(config["dataset"]["seed"] + 1)
    pairs = torch.randperm(len(dataset.x_test), generator=generator)[: 2 * params["lines"]].view(-1, 2)
    torch.manual_seed(config["seed"])
    model = build("mlp", dataset.input_shape, dataset.num_classes, widths=[width] * depth)

    def densities(net) -> tuple[list[float], list[int]]:
        results = [
            linear_regions(net, line=torch.stack([dataset.x_test[a], dataset.x_test[b]]), check_regions=16)
            for a, b in pairs.tolist()
        ]
        return [r.density for r in results], [r.count for r in results]

    init_density, init_count = densities(model)
    run = train_model(config, dataset, model=model, epochs=params["train_epochs"], stop_rule=False)
    trained_density, trained_count = densities(run.model)
    bound = serra_upper_bound(1, [width] * depth)
    metrics: dict[str, tuple[float, float | None]] = {
        "neurons": (float(width * depth), None),
        "depth": (float(depth), None),
        "width": (float(width), None),
        "log10_serra_bound": (math.log10(bound), None),
        "test_error": (1.0 - run.history.test_accuracy[-1], None) if run.history.n_test else (math.nan, None),
    }
    for phase, density, count in (("init", init_density, init_count), ("trained", trained_density, trained_count)):
        metrics[f"density_{phase}"] = _metric(density)
        metrics[f"regions_{phase}"] = _metric(count)
        metrics[f"bound_fraction_{phase}"] = (max(count) / bound, None)
    history = {"density_init": init_density, "density_trained": trained_density, "serra_bound": float(bound)}
    return {k: v for k, v in metrics.items() if math.isfinite(v[0])}, history, None


def _metric(values) -> tuple[float, float | None]:
    mean, se = mean_se([float(v) for v in values])
    return mean, (se if math.isfinite(se) else None)


def ols(design: np.ndarray, y: np.ndarray, column: int, null: float = 0.0) -> tuple[float, float, float, int]:
    """Ordinary least squares: (coefficient of ``column``, its standard error, t = (coef - null) / se, df)."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    df = len(y) - design.shape[1]
    residual = y - design @ coef
    sigma2 = float(residual @ residual) / df if df > 0 else math.nan
    covariance = sigma2 * np.linalg.pinv(design.T @ design)
    se = math.sqrt(max(float(covariance[column, column]), 0.0))
    t = (coef[column] - null) / se if se > 0 else math.copysign(math.inf, coef[column] - null)
    return float(coef[column]), se, float(t), df


def phase_tests(neurons: np.ndarray, depth: np.ndarray, density: np.ndarray) -> dict[str, float]:
    """The two regressions of one phase: density on N (slope > 0) and log density on depth at fixed N (< log 2)."""
    from scipy import stats

    y = np.asarray(density, float)
    design = np.column_stack([np.ones_like(y), neurons])
    b, b_se, b_t, df = ols(design, y, 1)
    fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    r2 = 1.0 - float(((y - fitted) ** 2).sum() / ((y - y.mean()) ** 2).sum()) if y.var() > 0 else math.nan
    levels = sorted(set(neurons.tolist()))
    dummies = np.column_stack([(neurons == n).astype(float) for n in levels])
    s, s_se, s_t, s_df = ols(np.column_stack([depth, dummies]), np.log(np.maximum(y, 1e-12)), 0, _SLOPE_NULL)
    return {
        "neuron_slope": b,
        "neuron_slope_se": b_se,
        "neuron_p": float(stats.t.sf(b_t, df)),
        "neuron_p_opposite": float(stats.t.cdf(b_t, df)),
        "r2_linear_in_neurons": r2,
        "depth_slope": s,
        "depth_slope_se": s_se,
        "depth_p": float(stats.t.cdf(s_t, s_df)),
        "depth_p_opposite": float(stats.t.sf(s_t, s_df)),
    }


def verdict_of(frame, bound_fraction: float = 0.1, alpha: float = ALPHA) -> tuple[Verdict, dict[str, Any]]:
    """The verdict from a frame with columns neurons, depth, density_init, density_trained, bound_fraction_*."""
    neurons, depth = frame["neurons"].to_numpy(float), frame["depth"].to_numpy(float)
    numbers: dict[str, Any] = {}
    for phase in ("init", "trained"):
        tests = phase_tests(neurons, depth, frame[f"density_{phase}"].to_numpy(float))
        numbers.update({f"{phase}.{k}": v for k, v in tests.items()})
    deepest = float(frame["depth"].max())
    deep = frame[frame["depth"] == deepest] if deepest >= 2 else frame.iloc[:0]
    worst = max(float(deep[f"bound_fraction_{p}"].max()) for p in ("init", "trained")) if len(deep) else math.nan
    numbers["max_bound_fraction_deepest"] = worst
    for d, cell in frame.groupby("depth"):
        numbers[f"max_bound_fraction_depth_{int(d)}"] = float(
            cell[["bound_fraction_init", "bound_fraction_trained"]].max().max()
        )
    p_values = [numbers[f"{p}.{t}_p"] for p in ("init", "trained") for t in ("neuron", "depth")]
    opposite = min(numbers[f"{p}.{t}_p_opposite"] for p in ("init", "trained") for t in ("neuron", "depth"))
    p_value = max(p_values)
    below = math.isfinite(worst) and worst < bound_fraction
    if p_value < alpha and below:
        held: bool | None = True
    elif opposite < alpha or (math.isfinite(worst) and not below):
        held = False
    else:
        held = None
    slope = max(numbers["init.depth_slope"], numbers["trained.depth_slope"])
    detail = (
        f"density per neuron: slope {numbers['init.neuron_slope']:.4f} at init, "
        f"{numbers['trained.neuron_slope']:.4f} trained (R² of the linear fit {numbers['init.r2_linear_in_neurons']:.2f}"
        f" / {numbers['trained.r2_linear_in_neurons']:.2f}); log-density per layer at fixed N: "
        f"{numbers['init.depth_slope']:+.3f} ± {numbers['init.depth_slope_se']:.3f} at init, "
        f"{numbers['trained.depth_slope']:+.3f} ± {numbers['trained.depth_slope_se']:.3f} trained "
        f"(H0 >= log 2 = {_SLOPE_NULL:.3f}); at depth {deepest:g} at most {worst:.2%} of the Serra bound "
        f"(threshold {bound_fraction:.0%})."
    )
    test = (
        f"intersection-union of four one-sided OLS t-tests over {len(frame)} runs (density slope on N > 0, "
        f"log-density slope on depth at fixed N < log 2; at init and trained) plus every count at the deepest depth "
        f"< {bound_fraction:.0%} of the Serra bound"
    )
    return Verdict(held, test, slope, p_value, alpha, detail), numbers


def analyse(frame, spec: dict[str, Any], store) -> Outcome:
    """Regressions, the Serra comparison, the headline figure and the per-cell table."""
    verdict, numbers = verdict_of(frame, spec["params"]["bound_fraction"])
    rows = []
    for (n, d), cell in frame.groupby(["neurons", "depth"]):
        row: dict[str, Any] = {"neurons": int(n), "depth": int(d), "width": int(cell["width"].iloc[0])}
        for phase in ("init", "trained"):
            mean, se = mean_se(cell[f"density_{phase}"])
            row[f"density {phase}"] = f"{mean:.3f} ± {se:.3f}"
            row[f"regions {phase}"] = round(float(cell[f"regions_{phase}"].mean()), 1)
        row["Serra bound"] = f"10^{cell['log10_serra_bound'].iloc[0]:.1f}"
        row["test error"] = round(float(cell["test_error"].mean()), 3) if "test_error" in cell else None
        rows.append(row)
    columns = ["neurons", "depth", "width", "density init", "density trained", "regions init", "regions trained"]
    columns += ["Serra bound", "test error"]
    figures = [
        (
            _headline(frame),
            "Left: regions per unit length on lines between test points vs hidden neurons N "
            "(open: initialisation, filled: trained; mean ± s.e. over seeds). Right: regions per line vs depth "
            "at each N, with the Serra upper bound of a line (dashed), which grows exponentially with depth.",
        )
    ]
    notes = [
        "A line of input space meets the network as a one-input network, so its worst case is "
        "serra_upper_bound(1, widths) = prod over layers of (width + 1) when every width >= 1."
    ]
    return Outcome(verdict, figures, [("Region density per cell", columns, rows)], numbers, notes)


def _headline(frame) -> str:
    from matplotlib.figure import Figure

    from deepscope.sweep._report_figures import inline_svg

    figure = Figure(figsize=(9.0, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    colours = ("#2457a6", "#c26a00", "#2e8b57", "#b3261e", "#7b4fa0", "#5b6775")
    depths = sorted(frame["depth"].unique())
    for i, d in enumerate(depths):
        cells = frame[frame["depth"] == d].groupby("neurons")
        for phase, face in (("init", "none"), ("trained", colours[i % 6])):
            stats = [(n, *mean_se(c[f"density_{phase}"])) for n, c in cells]
            x, y, e = (np.array(v, float) for v in zip(*stats))
            left.errorbar(
                x,
                y,
                yerr=np.nan_to_num(e),
                fmt="o-" if phase == "trained" else "o--",
                ms=5,
                mfc=face,
                color=colours[i % 6],
                lw=1,
                label=f"depth {int(d)}, {phase}",
            )
    left.set_xlabel("hidden neurons N")
    left.set_ylabel("regions per unit length")
    left.set_xlim(left=0)
    left.set_ylim(bottom=0)
    left.legend(fontsize=6, ncol=2)
    for i, (n, group) in enumerate(frame.groupby("neurons")):
        cells = group.groupby("depth")
        x = np.array([d for d, _ in cells], float)
        right.plot(x, [c["regions_trained"].mean() for _, c in cells], "o-", color=colours[i % 6], label=f"N={int(n)}")
        right.plot(x, [10 ** c["log10_serra_bound"].iloc[0] for _, c in cells], "--", color=colours[i % 6], lw=1)
    right.set_yscale("log")
    right.set_xlabel("depth (hidden layers, width N / depth)")
    right.set_ylabel("regions per line (trained)")
    right.set_title("dashed: Serra upper bound", fontsize=8)
    right.legend(fontsize=6)
    return inline_svg(figure)
