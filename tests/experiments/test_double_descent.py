"""Deep double descent: the peak statistic on synthetic populations, the pipeline, the checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from deepscope.experiments import double_descent as dd
from deepscope.experiments import run_experiment
from deepscope.experiments._base import experiment_spec
from deepscope.sweep.spec import SpecError

WIDTHS = [4, 8, 16, 32, 48, 64, 96, 128, 256, 512]
THRESHOLD = 4000.0  # N·K for N = 400, K = 10; on digits (64 inputs) width 48 has 3610 parameters


def population(peak_by_noise, seeds=(0, 1, 2), slope=0.0):
    """Test error = 0.3 − slope·log(width) + peak at width 48 + a small, seed-dependent jitter."""
    rows = []
    for noise, peak in peak_by_noise.items():
        for seed in seeds:
            jitter = np.random.default_rng(seed + int(noise * 100)).normal(0, 0.002, len(WIDTHS))
            for index, width in enumerate(WIDTHS):
                error = 0.3 - slope * np.log(width) + (peak if width == 48 else 0.0) + jitter[index]
                rows.append(
                    {
                        "key": f"{noise}-{seed}-{width}",
                        "model.width": width,
                        "data.label_noise": noise,
                        "seed": seed,
                        "parameters": float(dd.mlp_parameters(width, 64)),
                        "test_error": error,
                        "train_error": max(0.0, 0.2 - width / 200),
                    }  # fmt: skip
                )
    return pd.DataFrame(rows)


def test_threshold_width_and_sides_follow_n_times_k():
    peaks = dd.peak_heights(population({0.2: 0.1}), THRESHOLD)
    assert peaks["threshold_width"] == 48  # 3610 parameters: nearest to 4000 on a log scale (64 has 4810)
    assert peaks["small_widths"] == [4, 8]  # <= 1000 parameters
    assert peaks["large_widths"] == [256, 512]  # >= 16000 parameters


def test_peak_height_is_error_at_threshold_minus_larger_side_minimum():
    frame = population({0.2: 0.1}, slope=0.0)
    runs = dd.peak_heights(frame, THRESHOLD)["runs"]
    for run in runs:
        group = frame[(frame["seed"] == run["seed"])]
        errors = dict(zip(group["model.width"], group["test_error"]))
        expected = errors[48] - max(min(errors[4], errors[8]), min(errors[256], errors[512]))
        assert run["height"] == pytest.approx(expected)
        assert run["height"] == pytest.approx(0.1, abs=0.01)


def test_a_peak_that_grows_with_noise_holds():
    verdict = dd.decide_peak(dd.peak_heights(population({0.0: 0.0, 0.1: 0.05, 0.2: 0.1}), THRESHOLD))
    assert verdict.held is True
    assert verdict.p_value < 0.05
    assert "Spearman" in verdict.test and "paired t-test" in verdict.test


def test_monotone_decrease_without_a_peak_does_not_hold():
    # error falls with width everywhere: the threshold is above the large side's minimum at every seed
    verdict = dd.decide_peak(dd.peak_heights(population({0.0: 0.0, 0.2: 0.0}, slope=0.02), THRESHOLD))
    assert verdict.held is False


def test_a_peak_that_does_not_grow_with_noise_is_not_a_success():
    verdict = dd.decide_peak(dd.peak_heights(population({0.0: 0.1, 0.1: 0.1, 0.2: 0.1}), THRESHOLD))
    assert verdict.held is None


TINY = {
    "data.train_size": 40,  # N·K = 400: width 1 (85 parameters), 4 (310), 32 (2410)
    "search.grid.model.width": [1, 4, 32],
    "search.grid.data.label_noise": [0.0, 0.2],
    "train.max_epochs": 2,
}


def test_pipeline_writes_page_json_and_headline(tmp_path):
    payload = run_experiment("double_descent", tmp_path, overrides=TINY, progress=False)
    for suffix in ("html", "json", "svg"):
        assert (tmp_path / f"double_descent.{suffix}").exists()
    stored = json.loads((tmp_path / "double_descent.json").read_text())
    assert stored["verdict"]["held"] in (True, False, None)
    assert stored["numbers"]["threshold_width"] == 4
    assert payload["models"] == 18
    assert (tmp_path / "double_descent.svg").read_text().lstrip().startswith("<svg")


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"seeds": [0, 1]}, "seeds"),
        ({"search.grid.model.width": [4, 8, 48]}, "search.grid.model.width"),  # nothing on the large side
        ({"search.grid.model.width": [48]}, "search.grid.model.width"),
        ({"search.grid.data.label_noise": [0.0]}, "search.grid.data.label_noise"),
        ({"train.stop_loss": 0.01}, "train.stop_loss"),
        ({"model.depth": 2}, "model"),
    ],
)
def test_check_refuses_meaningless_settings(overrides, path):
    with pytest.raises(SpecError) as caught:
        experiment_spec("double_descent", "small", overrides)
    assert path in [p for p, _ in caught.value.problems]


def test_full_budget_is_meaningful():
    spec = experiment_spec("double_descent", "full")
    assert spec["dataset"]["name"] == "mnist1d" and spec["data"]["train_size"] == 4000


@pytest.mark.slow
def test_small_budget_shows_the_peak(tmp_path):
    payload = run_experiment("double_descent", tmp_path, progress=False)
    assert (tmp_path / "double_descent.html").exists()
    assert payload["models"] == 90
    assert payload["verdict"]["held"] is True


def test_the_double_descent_kind_is_the_train_trial():
    from deepscope.sweep.spec import expand, parse_spec
    from deepscope.sweep.trial import run_trial

    raw = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "width": 4, "depth": 1},
        "train": {"max_epochs": 1, "stop_loss": None},
        "data": {"train_size": 40},
    }
    plain = run_trial(expand(parse_spec(raw))[0])
    as_kind = run_trial(expand(parse_spec({**raw, "kind": "double_descent"}))[0])
    assert plain.error is None and as_kind.error is None
    assert as_kind.metrics == plain.metrics
    assert as_kind.history == plain.history
