"""Memorisation of random labels: the verdict on synthetic populations, the label draw, pipeline, checks."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from deepscope.experiments import random_labels as rl
from deepscope.experiments import run_experiment
from deepscope.experiments._base import experiment_spec
from deepscope.sweep.spec import SpecError

FRACTIONS = [0.0, 0.25, 0.5, 0.75, 1.0]


def population(epochs, errors, fitted=None, seeds=(0, 1, 2)):
    """One run per (fraction, seed); epochs/errors: per fraction, plus seed·(small offset)."""
    rows = []
    for index, fraction in enumerate(FRACTIONS):
        for seed in seeds:
            rows.append(
                {
                    "key": f"{fraction}-{seed}",
                    "random_fraction": fraction,
                    "seed": seed,
                    "fitted": 1.0 if fitted is None else fitted[index],
                    "epochs_to_fit": epochs[index] + 3 * seed,
                    "test_error": errors[index] + 0.004 * seed,
                }  # fmt: skip
            )
    return pd.DataFrame(rows)


def test_slower_fit_and_chance_error_hold():
    verdict = rl.decide_memorisation(population([40, 120, 200, 260, 300], [0.05, 0.3, 0.5, 0.7, 0.9]))
    assert verdict.held is True
    assert verdict.p_value < 0.05
    assert "Spearman" in verdict.test and "t-test" in verdict.test


def test_test_error_far_below_chance_at_full_randomness_is_not_a_success():
    # everything else holds, but with all labels random the test error is 0.5, far from chance 0.9
    verdict = rl.decide_memorisation(population([40, 120, 200, 260, 300], [0.05, 0.1, 0.2, 0.3, 0.5]))
    assert verdict.held is None


def test_a_run_that_does_not_fit_makes_it_inconclusive():
    verdict = rl.decide_memorisation(
        population([40, 120, 200, 260, 300], [0.05, 0.3, 0.5, 0.7, 0.9], fitted=[1, 1, 1, 1, 0])
    )
    assert verdict.held is None


def test_random_labels_fitting_faster_does_not_hold():
    verdict = rl.decide_memorisation(population([300, 260, 200, 120, 40], [0.05, 0.3, 0.5, 0.7, 0.9]))
    assert verdict.held is False


def test_randomise_labels_draws_the_stated_fraction_uniformly_and_is_seeded():
    labels = torch.arange(10).repeat(1000)  # 10,000 labels, every class equally often
    out = rl.randomise_labels(labels, 0.5, 10, seed=3)
    assert torch.equal(labels, torch.arange(10).repeat(1000))  # the input is not modified
    assert torch.equal(out, rl.randomise_labels(labels, 0.5, 10, seed=3))
    changed = int((out != labels).sum())
    # 5,000 draws, each hits the true class with probability 1/10: 4,500 changed, sd = sqrt(5000·0.09) ≈ 21
    assert abs(changed - 4500) < 110
    counts = torch.bincount(out, minlength=10).float()
    assert torch.all((counts - 1000).abs() < 150)
    assert torch.equal(rl.randomise_labels(labels, 0.0, 10, seed=3), labels)


def test_epochs_to_fit_are_the_first_epochs_meeting_each_criterion():
    accuracy = [0.1, 0.5, 0.9, 1.0, 1.0]
    loss = [2.3, 1.0, 0.2, 0.05, 0.009]
    assert rl.epochs_to_fit(accuracy, loss, 0.01) == (3.0, 4.0)
    zero, fit = rl.epochs_to_fit([0.1, 0.5], [2.3, 1.0], 0.01)
    assert zero != zero and fit != fit  # NaN: never reached


TINY = {
    "data.train_size": 30,
    "model.width": 16,
    "train.max_epochs": 4,
    "seeds": [0, 1],
    "search.grid.params.random_fraction": [0.0, 0.5, 1.0],
    "analyses": [
        {"name": "measures", "options": {"families": ["norm"], "max_samples": 30}},
        {"name": "pac_bayes_certificate", "options": {"iterations": 2, "prior_iterations": 2, "mc_samples": 1}},
    ],
}


def test_pipeline_writes_page_json_and_headline(tmp_path):
    payload = run_experiment("random_labels", tmp_path, overrides=TINY, progress=False)
    for suffix in ("html", "json", "svg"):
        assert (tmp_path / f"random_labels.{suffix}").exists()
    stored = json.loads((tmp_path / "random_labels.json").read_text())
    assert payload["models"] == 6
    # 4 epochs cannot fit 30 examples to a cross-entropy of 0.01: the verdict must not claim success
    assert stored["verdict"]["held"] is None
    assert "pac_bayes_certificate.certificate" in stored["numbers"]


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"seeds": [0]}, "seeds"),
        ({"search.grid.params.random_fraction": [0.0, 1.0]}, "search.grid.params.random_fraction"),
        ({"search.grid.params.random_fraction": [0.0, 0.25, 0.5]}, "search.grid.params.random_fraction"),
        ({"train.stop_loss": None}, "train.stop_loss"),
        ({"data.label_noise": 0.1}, "data.label_noise"),
    ],
)
def test_check_refuses_meaningless_settings(overrides, path):
    with pytest.raises(SpecError) as caught:
        experiment_spec("random_labels", "small", overrides)
    assert path in [p for p, _ in caught.value.problems]


def test_fraction_outside_zero_one_is_a_spec_error():
    with pytest.raises(SpecError) as caught:
        experiment_spec("random_labels", "small", {"search.grid.params.random_fraction": [0.0, 0.5, 1.5]})
    assert any("random_fraction" in p for p, _ in caught.value.problems)


@pytest.mark.slow
def test_small_budget_fits_random_labels(tmp_path):
    payload = run_experiment("random_labels", tmp_path, progress=False)
    assert (tmp_path / "random_labels.html").exists()
    assert payload["models"] == 15
    assert payload["verdict"]["held"] is True
