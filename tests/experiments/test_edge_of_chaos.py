"""edge_of_chaos experiment: the stratified verdict on synthetic grids, the pipeline, the checks."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from deepscope.experiments import experiment_spec, run_experiment
from deepscope.experiments.edge_of_chaos import mantel_haenszel, mean_field, trainable_depths, verdict_of
from deepscope.sweep.spec import SpecError

_XI = {0.5: 1.2, 1.0: 3.6, 1.5: 15.8, 2.5: 11.8, 4.0: 7.0}  # tanh at sigma_b^2 = 0.05 (mean field)


def _frame(trainable, seeds=2):
    """A synthetic grid: accuracy 0.95 where ``trainable(depth, xi_c)``, else chance (0.1)."""
    rows = []
    for sigma, xi in _XI.items():
        for depth in (4, 8, 16, 32, 48):
            for seed in range(seeds):
                accuracy = 0.95 if trainable(depth, xi) else 0.1
                rows.append({"sigma_w2": sigma, "depth": depth, "xi_c": xi, "train_accuracy": accuracy, "seed": seed})
    return pd.DataFrame(rows)


def test_trainable_within_a_multiple_of_xi_c_holds():
    verdict, numbers = verdict_of(_frame(lambda d, xi: d <= 5 * xi), threshold=0.5, multiple=6.0)
    assert verdict.held is True and verdict.p_value < 1e-3
    assert numbers["trainable_rate_beyond"] == 0.0
    assert numbers["spearman_rho"] > 0.8
    assert numbers["trainable_depth"]["0.5"] == 4.0 and numbers["trainable_depth"]["1.5"] == 48.0


def test_trainability_unrelated_to_xi_c_is_not_a_success():
    # trainable exactly when shallow, whatever sigma_w^2: no relation to xi_c across sigma
    verdict, numbers = verdict_of(_frame(lambda d, xi: d <= 16), threshold=0.5, multiple=6.0)
    assert verdict.held is not True
    assert "spearman_rho" not in numbers  # the same trainable depth at every sigma_w^2


def test_trainable_only_beyond_xi_c_does_not_hold():
    verdict, _ = verdict_of(_frame(lambda d, xi: d > 6 * xi), threshold=0.5, multiple=6.0)
    assert verdict.held is False


def test_threshold_decides_trainable():
    frame = _frame(lambda d, xi: d <= 5 * xi)
    assert trainable_depths(frame, 0.5)[1.0] == 16.0
    assert trainable_depths(frame, 0.99)[1.0] == 0.0


def test_mean_field_matches_the_edge_of_chaos():
    chi_ordered, xi_ordered = mean_field(1.0, 0.05)
    chi_chaotic, _ = mean_field(4.0, 0.05)
    assert chi_ordered < 1 < chi_chaotic
    assert xi_ordered == pytest.approx(3.63, abs=0.05)  # -1 / ln chi_c at sigma_w^2 = 1


def test_pipeline_tiny(tmp_path):
    overrides = {
        "seeds": [0, 1],
        "params.steps": 10,
        "params.width": 8,
        "search.grid.params.depth": [2, 4, 8],
        "search.grid.params.sigma_w2": [0.5, 1.5, 4.0],
    }
    payload = run_experiment("edge_of_chaos", tmp_path, overrides=overrides, progress=False)
    for name in ("edge_of_chaos.html", "edge_of_chaos.json", "edge_of_chaos.svg"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "edge_of_chaos.json").read_text())
    assert saved["verdict"]["held"] in (True, False, None)
    assert payload["models"] == 18 and "contingency" in saved["numbers"]


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("search.grid.params.depth", [4, 8], "search.grid.params.depth"),
        ("search.grid.params.sigma_w2", [1.0], "search.grid.params.sigma_w2"),
        ("search.grid.params.sigma_b2", [0.0, 0.05], "search.grid.params.sigma_b2"),
        ("seeds", [0], "seeds"),
    ],
)
def test_check_refuses_meaningless_settings(key, value, path):
    with pytest.raises(SpecError) as error:
        experiment_spec("edge_of_chaos", "small", {key: value})
    assert any(p == path for p, _ in error.value.problems)


@pytest.mark.slow
def test_small_budget(tmp_path):
    payload = run_experiment("edge_of_chaos", tmp_path, progress=False)
    assert (tmp_path / "edge_of_chaos.html").is_file()
    assert payload["verdict"]["held"] is True


def test_mantel_haenszel_by_hand():
    # one stratum [[3, 1], [1, 3]]: E[a] = 2, Var[a] = 4*4*4*4 / (8^2 * 7), z = 1 / sqrt(Var)
    inside = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    trainable = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    z, p, opposite = mantel_haenszel(inside, trainable, np.zeros(8))
    assert z == pytest.approx(1 / math.sqrt(256 / 448))
    assert p == pytest.approx(0.0929, abs=1e-3) and p + opposite == pytest.approx(1.0)
    # two strata where the association flips cancel out
    z, _, _ = mantel_haenszel(np.tile(inside, 2), np.concatenate([trainable, ~trainable]), np.repeat([0, 1], 8))
    assert z == pytest.approx(0.0)
