"""Lazy training: the NTK parameterisation, the verdict on synthetic populations, the pipeline, the checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from deepscope.experiments import lazy_training as lazy
from deepscope.experiments import run_experiment
from deepscope.experiments._base import experiment_spec
from deepscope.sweep.spec import SpecError

WIDTHS = [32, 64, 128, 256, 512, 1024]


def population(powers=(-0.5, -1.0, -0.5), noise=0.05, seeds=(0, 1, 2)):
    """One run per (width, seed): each metric = width**power times a seeded lognormal factor."""
    rng = np.random.default_rng(0)
    rows = []
    for width in WIDTHS:
        for seed in seeds:
            row = {"key": f"{width}-{seed}", "params.width": width, "seed": seed}
            for metric, power in zip(lazy.METRICS, powers):
                row[metric] = width**power * math.exp(noise * rng.standard_normal())
            rows.append(row)
    return pd.DataFrame(rows)


def test_loglog_slope_of_an_exact_power_law():
    widths = np.array([16, 64, 256, 1024])
    slope, se = lazy.loglog_slope(widths, 3.0 * widths**-0.5)
    assert slope == pytest.approx(-0.5)
    assert se == pytest.approx(0.0, abs=1e-9)


def test_measures_that_shrink_with_width_hold_and_slopes_are_recovered():
    verdict, rows, tests = lazy.decide_verdict(population())
    assert verdict.held is True
    assert verdict.p_value < 0.05
    assert "Spearman" in verdict.test and "6 widths x 3 seeds" in verdict.test
    # the fitted slopes match the planted powers within a few standard errors
    assert abs(tests["weight_change"]["slope"] + 0.5) < 4 * tests["weight_change"]["slope_se"] + 0.02
    assert abs(tests["ntk_drift"]["slope"] + 1.0) < 4 * tests["ntk_drift"]["slope_se"] + 0.02
    assert [r["width"] for r in rows] == WIDTHS
    assert rows[0]["weight_change"] == pytest.approx(32**-0.5, rel=0.1)


def test_a_kernel_that_drifts_more_with_width_does_not_hold():
    verdict, _, tests = lazy.decide_verdict(population(powers=(-0.5, 0.5, -0.5)))
    assert verdict.held is False
    assert tests["ntk_drift"]["spearman_rho"] > 0.9


def test_a_flat_linearisation_gap_is_inconclusive():
    # weights and kernel are lazy, but the gap to the linearised model does not shrink: pure noise
    verdict, _, tests = lazy.decide_verdict(population(powers=(-0.5, -1.0, 0.0), noise=0.3))
    assert tests["linearisation_gap"]["p_value"] > 0.05
    assert verdict.held is not True


def test_ntk_parameterisation_keeps_the_output_scale_and_unit_weights():
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    scales = []
    for width in (16, 4096):
        model = lazy.NTKMLP(10, width)
        assert float(model.weights[0].detach().std()) == pytest.approx(1.0, rel=0.1)  # entries N(0, 1)
        scales.append(float(model(x).detach().std()))
    # the output's scale does not grow with width (a standard-parameterised net with N(0,1) weights
    # would be sqrt(4096/16) = 16 times larger); 0.5 tolerates the narrow net's sampling spread
    assert scales[1] == pytest.approx(scales[0], rel=0.5)


TINY = {
    "search.grid.params.width": [8, 16, 32],
    "seeds": [0, 1],
    "params.steps": 5,
    "params.probe_size": 8,
    "data.train_size": 16,
}


def test_pipeline_at_a_tiny_budget(tmp_path):
    payload = run_experiment("lazy_training", tmp_path, overrides=TINY, progress=False)
    for suffix in ("html", "json", "svg"):
        assert (tmp_path / f"lazy_training.{suffix}").is_file()
    written = json.loads((tmp_path / "lazy_training.json").read_text())
    assert written["verdict"]["held"] in (True, False, None)
    assert written["models"] == 6
    assert set(written["numbers"]["tests"]) == set(lazy.METRICS)
    assert payload["verdict"] == written["verdict"]
    # the headline and the network-vs-linearisation loss curves read from the stored histories
    assert (tmp_path / "lazy_training.html").read_text().count("<figure>") == 2


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"search.grid.params.width": [64, 128]}, "search.grid.params.width"),
        ({"search.grid.train.lr": [0.1, 0.2]}, "search.grid.train.lr"),
        ({"seeds": [0]}, "seeds"),
    ],
)
def test_check_refuses_meaningless_settings(overrides, path):
    with pytest.raises(SpecError) as error:
        experiment_spec("lazy_training", "small", overrides)
    assert path in [p for p, _ in error.value.problems]
    assert path in str(error.value)


@pytest.mark.slow
def test_small_budget_shows_lazy_training(tmp_path):
    payload = run_experiment("lazy_training", tmp_path, progress=False)
    assert (tmp_path / "lazy_training.html").is_file()
    assert payload["verdict"]["held"] is True
    assert payload["numbers"]["tests"]["weight_change"]["slope"] < 0
