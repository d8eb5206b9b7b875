"""heavy_tails experiment: the verdict on synthetic populations, the pipeline, the checks."""

import copy
import json

import numpy as np
import pandas as pd
import pytest

from deepscope.experiments import experiment_spec, run_experiment
from deepscope.experiments.heavy_tails import certificate_seed, verdict_of
from deepscope.sweep.spec import SpecError, expand

_TINY = {
    "train.max_epochs": 1,
    "dataset.n_samples": 400,
    "data.train_size": 150,
    "model.width": 16,
    "params.pac_iterations": 2,
    "params.prior_iterations": 2,
    "params.mc_samples": 1,
    "params.test_weight_samples": 1,
    "params.min_eigenvalues": 8,
    "search.grid.train.batch_size": [64, 128, 256, 512],
    "search.grid.train.lr": [0.05],
}


def _frame(alpha_to_accuracy, n=20, certificate_gap=0.1, violating=0):
    """A synthetic population: alpha in [2, 6], accuracy = f(alpha) + noise; certificates above the error
    by ``certificate_gap`` except ``violating`` models, whose certificate is 0.05 below it."""
    rng = np.random.default_rng(1)
    alpha = rng.uniform(2.0, 6.0, n)
    accuracy = alpha_to_accuracy(alpha) + 0.01 * rng.standard_normal(n)
    error = 1.0 - accuracy + 0.05
    certificate = error + certificate_gap
    certificate[:violating] = error[:violating] - 0.05
    return pd.DataFrame(
        {"mean_alpha": alpha, "test_accuracy": accuracy, "test_error": 1.0 - accuracy,
         "stochastic_test_error": error, "certificate": certificate}
    )  # fmt: skip


def test_smaller_alpha_better_accuracy_holds():
    verdict, numbers = verdict_of(_frame(lambda a: 0.9 - 0.05 * a), delta_total=0.035)
    assert verdict.held is True
    assert numbers["spearman_rho"] < -0.9 and numbers["violations"] == 0


def test_larger_alpha_better_accuracy_does_not_hold():
    # the sign matters: a positive correlation is the opposite of the claim
    verdict, numbers = verdict_of(_frame(lambda a: 0.5 + 0.05 * a), delta_total=0.035)
    assert numbers["spearman_rho"] > 0.9
    assert verdict.held is False


def test_no_relation_is_inconclusive():
    verdict, numbers = verdict_of(_frame(lambda a: np.full_like(a, 0.6)), delta_total=0.035)
    assert abs(numbers["spearman_rho"]) < 0.5
    assert verdict.held is None


def test_frequent_certificate_violations_do_not_hold():
    # 5 of 20 violations (25%) is far above delta + delta_mc = 3.5%: the binomial test rejects
    verdict, numbers = verdict_of(_frame(lambda a: 0.9 - 0.05 * a, violating=5), delta_total=0.035)
    assert numbers["violations"] == 5 and numbers["violation_p"] < 0.01
    assert verdict.held is False


def test_one_violation_in_twenty_is_within_delta():
    verdict, numbers = verdict_of(_frame(lambda a: 0.9 - 0.05 * a, violating=1), delta_total=0.035)
    assert numbers["violation_p"] > 0.05
    assert verdict.held is True


def test_pipeline_tiny(tmp_path):
    payload = run_experiment("heavy_tails", tmp_path, overrides=_TINY, progress=False)
    for name in ("heavy_tails.html", "heavy_tails.json", "heavy_tails.svg"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "heavy_tails.json").read_text())
    assert saved["verdict"]["held"] in (True, False, None)
    assert payload["models"] == 8 and saved["numbers"]["certified_models"] == 8


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("seeds", [0], "seeds"),
        ("search.grid.train.batch_size", [16], "search.grid"),
        ("search.grid.train.lr", [0.05], "seeds"),  # 3 settings x 2 seeds = 6 models < 8
        ("model.arch", "cnn1d", "model.arch"),
    ],
)
def test_check_refuses_meaningless_settings(key, value, path):
    overrides = {key: value}
    if key == "model.arch":
        overrides = {"model": {"arch": "cnn1d"}}
    with pytest.raises(SpecError) as error:
        experiment_spec("heavy_tails", "small", overrides)
    assert any(p == path for p, _ in error.value.problems)


@pytest.mark.slow
def test_small_budget(tmp_path):
    payload = run_experiment("heavy_tails", tmp_path, progress=False)
    assert (tmp_path / "heavy_tails.html").is_file()
    # robust at this budget (p ~ 4e-6, 0/12 violations) and bit-reproducible on CPU
    assert payload["verdict"]["held"] is True


def test_every_model_has_its_own_certificate_seed():
    # with one seed for all models, prior="data" certifies the same predictor for every setting
    configs = expand(experiment_spec("heavy_tails", "small"))
    seeds = [certificate_seed(config) for config in configs]
    assert len(set(seeds)) == len(configs) == 12
    assert certificate_seed(copy.deepcopy(configs[0])) == seeds[0]
