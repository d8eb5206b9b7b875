"""Generalization benchmark: spectral metrics vs WeightWatcher 0.7.7, the measures table's cost,
and the PAC-Bayes certificate target on mnist1d.

1. Per-layer spectral metrics (power-law α of each layer's ESD) against ``WeightWatcher.analyze``
   on the same model, timed in one process: the digits CNN (``cnn2d``, 5 epochs, seed 0) and a wide
   MLP (784-1024-512-10, heavy-tailed Student-t weights so that the fits are valid). Agreement: the
   largest |α_ours − α_ww| over layers both call valid (WeightWatcher: no warning; ours: fit "ok").
   Timed as medians of repeated calls (201 on the CNN), and once more on the CNN with cold caches
   (64 MB read before every call, the two sides alternating).
2. The whole ``measures`` table for the digits CNN with the library defaults (target: < 60 s on 2 cores).
3. The PAC-Bayes certificate (f-quad, data-dependent prior on half the training set, 3000 prior steps, 300 posterior steps: PBB trains the posterior about one epoch) for a ``cnn1d``
   on mnist1d with 21,000 training samples, against the error of the same stochastic predictor on
   10,000 freshly generated samples (target: certificate < 0.25 and at most 2x that error).

Both sides of every comparison run single-threaded (torch and the BLAS/LAPACK pools limited to
1 thread), and WeightWatcher's ``analyze`` gets its defaults with ``plot=False``: no randomisation,
no MP fit; it fits the same layers with the same estimator (its own per-xmin loop; a bias-corrected
small-N variant on layers with few eigenvalues).

4. Before/after of the measures table on the typical digits CNN (issue 14 item 9): the table of
   commit ``BEFORE`` (extracted with ``git archive``) and of the working tree, each in its own
   single-threaded subprocess, alternating; the agreement column compares every value. A second
   row compares with commit ``BEFORE_EXACT`` (before the chunked early rejection and cache-sized
   chunks of the sharpness searches, which change no value): every row must be identical; it
   also times both at torch's default thread count.
5. The measures table on an untrained CIFAR ResNet-18 (11.2M parameters, 256 random 3×32×32
   inputs, defaults): each family in its own subprocess (seconds, peak resident memory), and the
   whole table once (issue 12 item 6: under 4 GB).

Run: ``python -m bench.bench_generalization`` (single-threaded; a few minutes), or
``python -m bench.bench_generalization --only spectral`` to rerun only part 1 (the other rows
already in ``bench/results/generalization.json`` are kept); ``--only measures-speed`` and
``--only resnet18`` run parts 4 and 5.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from bench.harness import RESULTS, compare, record
from deepscope import Problem
from deepscope.datasets import load
from deepscope.generalization import measures, pac_bayes_certificate, spectral_metrics
from deepscope.generalization._measures import spectral as spectral_module
from deepscope.guard import model_guard
from deepscope.models import build, train

COMMAND = "python -m bench.bench_generalization"


def _ww_analyze(model: nn.Module):
    import weightwatcher

    return weightwatcher.WeightWatcher(model=model).analyze(plot=False)


def _ww_alphas(model: nn.Module) -> dict[str, tuple[float, str]]:
    frame = _ww_analyze(model)
    return {str(row["name"]): (float(row["alpha"]), str(row["warning"])) for _, row in frame.iterrows()}


def _spectral_row(task: str, model: nn.Module, repeats: int) -> dict:
    ours = spectral_metrics(model)
    theirs = _ww_alphas(model)
    differences = [
        abs(layer.alpha_fitted - theirs[layer.name][0])
        for layer in ours.layers
        if layer.name in theirs and not theirs[layer.name][1] and layer.fit_quality == "ok"
    ]
    agreement = (
        f"max |Δα| = {max(differences):.1e} on {len(differences)} layer(s) valid for both"
        if differences
        else "no layer valid for both"
    )
    flagged = sum(layer.fit_quality != "ok" for layer in ours.layers)
    return compare(
        task,
        ours=lambda: spectral_metrics(model),
        reference=lambda: _ww_analyze(model),
        reference_name="WeightWatcher 0.7.7",
        repeats=repeats,
        agreement=agreement,
        notes=f"{len(ours.layers)} layers, {flagged} flagged as unreliable fits by deepscope",
    )


def _spectral_cold_row(task: str, model: nn.Module, repeats: int) -> dict:
    """The same comparison with cold caches: 64 MB (more than this machine's L3) are read before every
    call, and the two sides alternate, so neither finds its code or data in cache."""
    flush = np.ones(8 << 20)  # 64 MB of float64
    ours, theirs = [], []
    spectral_metrics(model), _ww_analyze(model)
    for _ in range(repeats):
        for function, times in ((lambda: spectral_metrics(model), ours), (lambda: _ww_analyze(model), theirs)):
            flush.sum()
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    return {
        "task": task,
        "reference": "WeightWatcher 0.7.7",
        "deepscope_median_s": ours_median,
        "reference_median_s": theirs_median,
        "speedup": theirs_median / ours_median,
        "repeats": repeats,
        "agreement": "",
        "notes": (
            "64 MB read before every call and the sides alternate (a one-off call in a busy process): "
            "both reload code and data, a fixed cost that weighs more on the shorter call"
        ),
    }


def _median_seconds(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _spectral_breakdown(label: str, model: nn.Module, repeats: int) -> str:
    """Where ``spectral_metrics`` spends its time: guard, eigenvalues, fits, the rest (medians)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    eigenvalues = [spectral_module._eigenvalues(layer.weight) for layer in layers]

    def guard_only() -> None:
        with model_guard(model):
            pass

    total = _median_seconds(lambda: spectral_metrics(model), repeats)
    guard = _median_seconds(guard_only, repeats)
    eig = sum(
        _median_seconds(lambda layer=layer: spectral_module._eigenvalues(layer.weight), repeats) for layer in layers
    )
    fit = sum(  # only the layers spectral_metrics fits (at least min_eigenvalues = 50 values by default)
        _median_seconds(lambda values=values: spectral_module.fit_power_law(values), repeats)
        for values in eigenvalues
        if len(values) >= 50
    )
    rest = total - guard - eig - fit
    sizes = ", ".join(str(len(values)) for values in eigenvalues)
    return (
        f"| {label} | {total * 1e3:.2f} | {guard * 1e3:.2f} | {eig * 1e3:.2f} | {fit * 1e3:.2f} | "
        f"{rest * 1e3:.2f} | {sizes} |"
    )


def _merge_with_recorded(rows: list[dict]) -> list[dict]:
    """Rows of this run plus the recorded rows of the parts not rerun (same task: replaced)."""
    path = RESULTS / "generalization.json"
    if not path.exists():
        return rows
    fresh = {row["task"] for row in rows}
    kept = [row for row in json.loads(path.read_text())["rows"] if row["task"] not in fresh]
    order = [row["task"] for row in json.loads(path.read_text())["rows"]]
    merged = kept + rows
    return sorted(merged, key=lambda row: order.index(row["task"]) if row["task"] in order else len(order))


def _wide_mlp() -> nn.Module:
    model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, 10))
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for layer in (model[0], model[2], model[4]):
            layer.weight.copy_(torch.from_numpy(rng.standard_t(3.0, size=tuple(layer.weight.shape)) * 0.02))
    return model


def _certificate_row() -> dict:
    dataset = load("mnist1d", n_samples=28_000, seed=0)
    fresh = load("mnist1d", n_samples=10_000, seed=12345, test_fraction=0.5)
    fresh_x = torch.cat([torch.as_tensor(fresh.x_train), torch.as_tensor(fresh.x_test)])
    fresh_y = torch.cat([torch.as_tensor(fresh.y_train), torch.as_tensor(fresh.y_test)])
    torch.manual_seed(0)
    run = train(build("cnn1d", dataset.input_shape, dataset.num_classes), dataset, epochs=15, lr=3e-3, seed=0)
    problem = Problem.from_dataset(run.model, dataset, init_state=run.init_state)
    start = time.perf_counter()
    certificate = pac_bayes_certificate(
        problem,
        objective="f-quad",
        prior="data",
        posterior_start="prior",  # Pérez-Ortiz et al.: certifies a network trained from the prior
        iterations=300,
        prior_iterations=3000,
        mc_samples=10,
    )
    seconds = time.perf_counter() - start
    measured = certificate.stochastic_error((fresh_x, fresh_y), samples=50)
    ratio = certificate.certificate / measured.error if measured.error > 0 else math.inf
    return {
        "task": f"PAC-Bayes certificate (prior='data', posterior_start='prior'), cnn1d on mnist1d ({len(dataset.x_train)} train)",
        "reference": "target: < 0.25 and <= 2x stochastic error on 10,000 fresh samples",
        "deepscope_median_s": seconds,
        "reference_median_s": None,
        "speedup": None,
        "repeats": 1,
        "agreement": (
            f"certificate {certificate.certificate:.4f}, stochastic error {measured.error:.4f} ± {measured.standard_error:.4f} "
            f"(ratio {ratio:.2f}), deterministic test acc {run.history.test_accuracy[-1]:.4f}"
        ),
        "notes": (
            f"KL {certificate.kl:.0f} nats, n_bound {certificate.n_bound}, prior σ {certificate.prior_sigma:.3g}, "
            f"MC train error {certificate.empirical_risk_mc:.4f} -> {certificate.empirical_risk_bound:.4f}"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=("spectral", "measures", "measures-typical", "certificate", "measures-speed", "resnet18"),
        default=None,
    )
    only = parser.parse_args().only
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    with threadpool_limits(limits=1):
        rows, extra = _run(only)
    if only and not extra and (RESULTS / "generalization.json").exists():  # keep the recorded breakdown
        extra = json.loads((RESULTS / "generalization.json").read_text()).get("extra_markdown", "")
    path = record("generalization", _merge_with_recorded(rows) if only else rows, command=COMMAND, extra_markdown=extra)
    print(f"wrote {path}")
    for row in rows:
        print(row)


def _typical_measures_row() -> dict:
    """The whole table on the typical digits CNN (bench/typical.py: 151k parameters), with each family's cost."""
    import os

    from bench.typical import TYPICAL_CNN, typical_cnn, typical_run

    model, digits = typical_cnn()
    problem = Problem.from_dataset(model, digits, init_state=typical_run().init_state)
    load_average = os.getloadavg()[0]
    start = time.perf_counter()
    table = measures(problem)
    seconds = time.perf_counter() - start
    costs = ", ".join(f"{family} {value:.1f} s" for family, value in table.family_seconds.items())
    searches = {row["name"]: row["seconds"] for row in table.rows() if row["name"] in _SEARCHES}
    return {
        "task": f"whole measures table (defaults), TYPICAL MODEL ({TYPICAL_CNN}), {table.samples_used} train examples",
        "reference": "target: < 20 s (issue 14)",
        "deepscope_median_s": seconds,
        "reference_median_s": None,
        "speedup": None,
        "repeats": 1,
        "agreement": "",
        "notes": (
            f"{len(table.measures)} measures, {table.forward_passes} example-forward passes, 1 thread, load average "
            f"{load_average:.1f} at the start; per family: {costs}; searches: "
            + ", ".join(f"{name} {value:.1f} s" for name, value in searches.items())
        ),
        "family_seconds": table.family_seconds,
    }


_SEARCHES = ("pac_bayes_sigma", "pac_bayes_mag_sigma", "worst_case_sharpness_alpha")


def _run(only: str | None) -> tuple[list[dict], str]:
    digits = load("digits", seed=0)
    torch.manual_seed(0)
    run = train(build("cnn2d", digits.input_shape, digits.num_classes), digits, epochs=5, lr=1e-3, seed=0)
    rows, extra = [], ""
    try:
        import weightwatcher  # noqa: F401  (optional: pip install weightwatcher==0.7.7)
    except ImportError:
        print("weightwatcher is not installed: skipping the spectral-metrics comparison")
    else:
        if only in (None, "spectral"):
            mlp = _wide_mlp()
            rows.append(_spectral_row("spectral metrics, all layers, digits cnn2d", run.model, repeats=201))
            rows.append(_spectral_row("spectral metrics, all layers, MLP 784-1024-512-10", mlp, repeats=11))
            rows.append(_spectral_cold_row("spectral metrics, all layers, digits cnn2d, cold caches", run.model, 51))
            extra = "\n".join(
                [
                    "Where `spectral_metrics` spends its time (ms, medians, 1 thread; guard = the `model_guard` "
                    "every registered analysis runs in; eigenvalues = float64 Gram + LAPACK `eigvalsh` per layer; "
                    "fit = the power-law/KS search (branch and bound above 80 values) on the layers with at least 50 "
                    "eigenvalues (smaller ones are not fitted by default), each timed alone in a warm loop; "
                    "rest = the remainder: per-layer Python, building the result, and running the pieces back to back "
                    "instead of each in its own warm loop):",
                    "",
                    "| model | total | guard | eigenvalues | fit | rest | eigenvalues per layer |",
                    "|---|---|---|---|---|---|---|",
                    _spectral_breakdown("digits cnn2d", run.model, 101),
                    _spectral_breakdown("MLP 784-1024-512-10", mlp, 11),
                ]
            )
    if only in (None, "measures"):
        problem = Problem.from_dataset(run.model, digits, init_state=run.init_state)
        start = time.perf_counter()
        table = measures(problem)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "task": "whole measures table (defaults), digits cnn2d",
                "reference": "target: < 60 s on 2 cores",
                "deepscope_median_s": seconds,
                "reference_median_s": None,
                "speedup": None,
                "repeats": 1,
                "agreement": "",
                "notes": f"{len(table.measures)} measures, {table.forward_passes} example-forward passes, 1 thread",
            }
        )
    if only in (None, "measures-typical"):
        rows.append(_typical_measures_row())
    if only in (None, "certificate"):
        rows.append(_certificate_row())
    if only in (None, "measures-speed"):
        rows.append(_before_after_row())
        rows.append(_exact_before_after_row())
    if only in (None, "resnet18"):
        rows += _resnet18_rows()
    return rows, extra


BEFORE = "18e5b47"  # the measures as they were before issue 12/14's cost work (default 10 bisection steps)
BEFORE_EXACT = "52d3b89"  # before the searches' chunked early rejection and cache-sized chunks (same values)


def _worker(arguments: list[str], pythonpath: str | None = None) -> dict:
    """Run the worker in a subprocess; ``pythonpath``: a folder whose deepscope replaces this one."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if "default" in arguments:  # torch's default thread count
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    root = str(RESULTS.parent.parent)
    env["PYTHONPATH"] = root  # bench/ from here; deepscope from the working folder, first on sys.path
    done = subprocess.run(
        [sys.executable, "-m", "bench._measures_cost", *arguments],
        cwd=pythonpath or root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


_SEARCH_ROWS = {  # each sharpness search and the rows computed from its radius
    "pac_bayes_sigma": ("pac_bayes_orig", "pac_bayes_init", "pac_bayes_flatness"),
    "pac_bayes_mag_sigma": ("pac_bayes_mag_orig", "pac_bayes_mag_init", "pac_bayes_mag_flatness"),
    "worst_case_sharpness_alpha": ("sharpness_orig", "sharpness_init", "sharpness_flatness"),
}


def _agreement(before: dict, after: dict) -> str:
    """Each search radius: the old one inside the new bracket; the rows derived from the radii: their
    largest relative difference; every other row: its largest relative difference."""
    import re

    inside = []
    for name in _SEARCH_ROWS:
        bracket = re.search(r"crossing in \[([0-9.e+-]+), ([0-9.e+-]+)\)", after["rows"][name][1])
        inside.append(bool(bracket) and float(bracket.group(1)) <= before["rows"][name][0] < float(bracket.group(2)))
    derived = {row for rows in _SEARCH_ROWS.values() for row in rows} | set(_SEARCH_ROWS)

    def largest(names) -> tuple[float, str]:
        differences = [
            (abs(after["rows"][n][0] - before["rows"][n][0]) / abs(before["rows"][n][0]), n)
            for n in names
            if math.isfinite(before["rows"][n][0]) and before["rows"][n][0] != 0
        ]
        return max(differences, default=(0.0, ""))

    searched = largest(derived)
    other = largest(set(before["rows"]) - derived)
    return (
        f"old σ, σ', α each inside the new 5-step bracket (ratio 2^(1/32) = 1.022): {all(inside)}; "
        f"values from the radii: max relative difference {searched[0]:.1e} ({searched[1]}); "
        f"every other row: {other[0]:.1e} ({other[1] or 'all equal'})"
    )


def _alternate(commit: str, repeats: int, arguments: tuple[str, ...] = ("typical",)) -> tuple[list[dict], list[dict]]:
    """The worker on ``commit``'s deepscope (``git archive``) and on the working tree, alternating."""
    import subprocess
    import tempfile

    root = RESULTS.parent.parent
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "archive", commit, "deepscope"], cwd=root, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        befores, afters = [], []
        for _ in range(repeats):  # alternating, so both arms see the same load
            befores.append(_worker(list(arguments), pythonpath=folder))
            afters.append(_worker(list(arguments)))
    return befores, afters


def _identical(before: dict, after: dict, names) -> str:
    """How many of ``names`` have bit-identical values (NaN equals NaN), the largest relative
    difference, and the first rows that differ."""
    names = [name for name in before["rows"] if name in set(names)]
    values = [(before["rows"][name][0], after["rows"][name][0]) for name in names]
    differing = [n for n, (a, b) in zip(names, values, strict=True) if a != b and not (math.isnan(a) and math.isnan(b))]
    largest = max((abs(b - a) / abs(a) for a, b in values if math.isfinite(a) and a != 0), default=0.0)
    listed = f" ({', '.join(differing[:3])}{' ...' if len(differing) > 3 else ''} differ)" if differing else ""
    return f"{len(names) - len(differing)} of {len(names)} identical, max relative difference {largest:.1e}{listed}"


def _passes(result: dict) -> str:
    import re

    counts = []
    for name in _SEARCH_ROWS:
        found = re.search(r"(\d+) forward passes", result["rows"][name][1])
        counts.append(found.group(1) if found else "?")
    return "/".join(counts)


def _exact_before_after_row(repeats: int = 3) -> dict:
    befores, afters = _alternate(BEFORE_EXACT, repeats)
    threaded_before, threaded_after = _alternate(BEFORE_EXACT, 1, ("typical", "default"))
    before, after = befores[0], afters[0]
    searched = {row for rows in _SEARCH_ROWS.values() for row in rows} | set(_SEARCH_ROWS)
    others = set(before["rows"]) - searched  # other families: changed only by work outside the searches
    agreement = (
        "sharpness rows (σ, σ', α and the 9 measures from them), every run: "
        + "; ".join(_identical(b, a, searched) for b, a in zip(befores, afters, strict=True))
        + f"; the other rows: {_identical(before, after, others)}"
    )
    cpu_before = statistics.median(r["cpu_seconds"] for r in befores)
    cpu_after = statistics.median(r["cpu_seconds"] for r in afters)
    loads = [r["load"] for r in befores + afters + threaded_before + threaded_after]
    return {
        "task": "whole measures table (defaults), TYPICAL MODEL, before/after the searches' chunked early rejection",
        "reference": f"the same table at commit {BEFORE_EXACT}",
        "deepscope_median_s": statistics.median(r["seconds"] for r in afters),
        "reference_median_s": statistics.median(r["seconds"] for r in befores),
        "speedup": statistics.median(r["seconds"] for r in befores) / statistics.median(r["seconds"] for r in afters),
        "repeats": repeats,
        "agreement": agreement,
        "notes": (
            f"1 thread each, alternating subprocesses, medians; CPU seconds before {cpu_before:.1f}, after "
            f"{cpu_after:.1f} ({cpu_before / cpu_after:.2f}x); torch's default {threaded_after[0]['threads']} threads "
            f"(wall, one run each): before {threaded_before[0]['seconds']:.1f} s, after {threaded_after[0]['seconds']:.1f} s; "
            f"example-forward passes of σ/σ'/α {_passes(before)} -> {_passes(after)}; load average "
            f"{min(loads):.1f}-{max(loads):.1f}; after per family: "
            + ", ".join(f"{family} {seconds:.1f} s" for family, seconds in afters[0]["family_seconds"].items())
        ),
    }


def _before_after_row(repeats: int = 2) -> dict:
    befores, afters = _alternate(BEFORE, repeats)
    before = sorted(befores, key=lambda r: r["seconds"])[len(befores) // 2]
    after = sorted(afters, key=lambda r: r["seconds"])[len(afters) // 2]
    costs = ", ".join(f"{family} {seconds:.1f} s" for family, seconds in after["family_seconds"].items())
    return {
        "task": "whole measures table (defaults), TYPICAL MODEL, before/after the cost work (issue 14 item 9)",
        "reference": f"the same table at commit {BEFORE}",
        "deepscope_median_s": statistics.median(r["seconds"] for r in afters),
        "reference_median_s": statistics.median(r["seconds"] for r in befores),
        "speedup": statistics.median(r["seconds"] for r in befores) / statistics.median(r["seconds"] for r in afters),
        "repeats": repeats,
        "agreement": _agreement(before, after),
        "notes": (
            f"1 thread each, alternating subprocesses; CPU seconds before {statistics.median(r['cpu_seconds'] for r in befores):.1f}, "
            f"after {statistics.median(r['cpu_seconds'] for r in afters):.1f}; load average "
            f"{min(r['load'] for r in befores + afters):.1f}-{max(r['load'] for r in befores + afters):.1f}; "
            f"after per family: {costs}; forward passes {before['forward_passes']} -> {after['forward_passes']}"
        ),
    }


def _resnet18_rows() -> list[dict]:
    rows = []
    for families in ("norm", "margin", "sharpness", "gradient", "spectral", "norm,margin,sharpness,gradient,spectral"):
        result = _worker(["resnet18", families])
        whole = "," in families
        declined = "; ".join(f"{family}: {reason}" for family, reason in result["declined"].items())
        rows.append(
            {
                "task": f"measures on ResNet-18 (11.2M params, 256 examples, defaults): {'whole table' if whole else families}",
                "reference": "targets: peak RSS < 4 GB (issue 12 item 6); a couple of minutes",
                "deepscope_median_s": result["seconds"],
                "reference_median_s": None,
                "speedup": None,
                "repeats": 1,
                "agreement": f"peak RSS {result['peak_rss_mb']:.0f} MB",
                "notes": (
                    f"1 thread, own subprocess, load average {result['load']:.1f} at the end; CPU {result['cpu_seconds']:.0f} s; "
                    + ", ".join(f"{family} {seconds:.1f} s" for family, seconds in result["family_seconds"].items())
                    + (f"; {declined}" if declined else "")
                ),
            }
        )
    return rows


if __name__ == "__main__":
    main()
