"""Edge of stability: the late-phase statistic and the verdict on synthetic runs, the pipeline, the checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from deepscope.experiments import edge_of_stability as eos
from deepscope.experiments import run_experiment
from deepscope.experiments._base import experiment_spec
from deepscope.sweep.spec import SpecError

LRS = [1.0, 1.5, 2.0]


def sharpening_curve(lr, steps=200, every=10, plateau=1.0, reach=0.3, wobble=0.03, seed=0):
    """Sharpness rising linearly from 0.3·(2/η) to plateau·(2/η) by step reach·steps, then hovering."""
    rng = np.random.default_rng(seed)
    measured = list(range(0, steps, every))
    edge = 2.0 / lr
    values = [
        edge * (0.3 + (plateau - 0.3) * min(1.0, s / (reach * steps))) * (1 + wobble * rng.standard_normal())
        for s in measured
    ]
    return measured, values


def test_late_ratio_of_a_curve_hovering_at_the_edge_is_one():
    measured, values = sharpening_curve(2.0)
    assert eos.late_sharpness_ratio(measured, values, 200, 2.0) == pytest.approx(1.0, abs=0.03)


def test_late_ratio_of_a_curve_stuck_at_half_the_edge_is_a_half():
    measured, values = sharpening_curve(1.0, plateau=0.5)
    assert eos.late_sharpness_ratio(measured, values, 200, 1.0) == pytest.approx(0.5, abs=0.02)


def test_late_ratio_uses_only_the_last_half():
    # at 0.3·(2/η) for the first half, at 2/η for the second: over all steps the median would be 0.65
    measured = list(range(0, 200, 10))
    values = [0.6 if s < 100 else 2.0 for s in measured]
    assert eos.late_sharpness_ratio(measured, values, 200, 1.0) == pytest.approx(1.0)


def test_late_ratio_without_late_measurements_is_nan():
    assert math.isnan(eos.late_sharpness_ratio([0, 10], [1.0, 2.0], 100, 1.0))


def test_loss_increases_counts_rises():
    assert eos.loss_increases([1.0, 0.9, 0.95, 0.8, 0.85, 0.7]) == 2
    assert eos.loss_increases([1.0, 0.9, 0.8]) == 0


def population(ratios, increases=5, final=0.5, spread=0.01, seeds=(0, 1, 2)):
    """One run per (η, seed): ratio per η (plus a seed offset), loss counts and final/initial loss."""
    rows = []
    for lr, ratio in zip(LRS, ratios):
        for seed in seeds:
            rows.append(
                {
                    "key": f"{lr}-{seed}",
                    "params.lr": lr,
                    "seed": seed,
                    "sharpness_ratio": ratio + spread * (seed - 1),
                    "loss_increases": float(increases),
                    "initial_loss": 1.0,
                    "final_loss": final,
                    "diverged": 0.0,
                }
            )
    return pd.DataFrame(rows)


def test_sharpness_at_the_edge_with_a_bumpy_decreasing_loss_holds():
    verdict, rows = eos.decide_verdict(population([1.02, 1.08, 1.1]))
    assert verdict.held is True
    assert verdict.p_value < 0.05
    assert "TOST" in verdict.test and "3 seeds" in verdict.test
    assert [r["η"] for r in rows] == LRS
    assert rows[0]["late sharpness / (2/η)"] == pytest.approx(1.02)


def test_sharpness_far_below_the_edge_does_not_hold():
    verdict, _ = eos.decide_verdict(population([0.5, 1.05, 1.1]))
    assert verdict.held is False


def test_sharpness_above_the_window_does_not_hold():
    verdict, _ = eos.decide_verdict(population([1.0, 1.05, 1.5]))
    assert verdict.held is False


def test_a_ratio_near_the_window_edge_with_a_wide_spread_is_inconclusive():
    verdict, _ = eos.decide_verdict(population([1.0, 1.05, 1.15], spread=0.1))
    assert verdict.held is None


def test_a_monotone_loss_is_not_the_edge_of_stability():
    verdict, _ = eos.decide_verdict(population([1.0, 1.05, 1.1], increases=0))
    assert verdict.held is None


def test_a_loss_that_does_not_decrease_does_not_hold():
    verdict, _ = eos.decide_verdict(population([1.0, 1.05, 1.1], final=1.2))
    assert verdict.held is False


def test_analyse_without_histories_still_draws_the_figure():
    outcome = eos.analyse(population([1.0, 1.05, 1.1]), {}, None)
    assert outcome.figures[0][0].startswith("<svg")
    assert outcome.numbers["per_lr"][1]["η"] == 1.5


TINY = {"params.steps": 30, "params.sharpness_every": 5, "data.train_size": 60, "search.grid.params.lr": [1.0, 2.0]}


def test_pipeline_at_a_tiny_budget(tmp_path):
    payload = run_experiment("edge_of_stability", tmp_path, overrides=TINY, progress=False)
    for suffix in ("html", "json", "svg"):
        assert (tmp_path / f"edge_of_stability.{suffix}").is_file()
    written = json.loads((tmp_path / "edge_of_stability.json").read_text())
    assert written["verdict"]["held"] in (True, False, None)
    assert written["models"] == 6
    assert len(written["numbers"]["per_lr"]) == 2
    assert payload["verdict"] == written["verdict"]
    assert "<svg" in (tmp_path / "edge_of_stability.html").read_text()


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"search.grid.train.lr": [0.1, 0.2]}, "search.grid.train.lr"),
        ({"seeds": [0, 1]}, "seeds"),
        ({"search.grid.params.lr": [1.0]}, "search.grid.params.lr"),
        ({"params.steps": 100, "params.sharpness_every": 30}, "params.sharpness_every"),
    ],
)
def test_check_refuses_meaningless_settings(overrides, path):
    with pytest.raises(SpecError) as error:
        experiment_spec("edge_of_stability", "small", overrides)
    assert path in [p for p, _ in error.value.problems]
    assert path in str(error.value)


@pytest.mark.slow
def test_small_budget_shows_the_edge_of_stability(tmp_path):
    payload = run_experiment("edge_of_stability", tmp_path, progress=False)
    assert (tmp_path / "edge_of_stability.html").is_file()
    assert payload["verdict"]["held"] is True
