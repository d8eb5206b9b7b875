"""linear_regions experiment: the verdict on synthetic populations, the pipeline, the checks."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from deepscope.experiments import experiment_spec, run_experiment
from deepscope.experiments.linear_regions import ols, verdict_of
from deepscope.sweep.spec import SpecError

_TINY = {
    "seeds": [0, 1],
    "params.train_epochs": 1,
    "params.lines": 2,
    "search.grid.params.neurons": [8, 16, 24],
    "search.grid.params.depth": [1, 2],
    "dataset.n_samples": 300,
    "data.train_size": 100,
}


def _frame(density, bound_fraction=0.01, seeds=3, noise=0.02):
    """A synthetic population: density(N, depth) given, multiplicative noise, the same at init and trained."""
    rng = np.random.default_rng(0)
    rows = []
    for n in (32, 64, 128):
        for d in (1, 2, 4):
            for _seed in range(seeds):
                value = density(n, d) * math.exp(noise * rng.standard_normal())
                rows.append(
                    {
                        "neurons": n,
                        "depth": d,
                        "width": n // d,
                        "density_init": value,
                        "density_trained": value,
                        "bound_fraction_init": bound_fraction,
                        "bound_fraction_trained": bound_fraction,
                    }
                )
    return pd.DataFrame(rows)


def test_density_linear_in_neurons_holds():
    verdict, numbers = verdict_of(_frame(lambda n, d: 0.05 * n * (1 - 0.05 * d)))
    assert verdict.held is True
    assert numbers["init.neuron_slope"] == pytest.approx(0.05 * (1 - 0.05 * 7 / 3), rel=0.05)
    # log density falls by about log(1 - 0.05 d) per layer: a slope near -0.06, far below log 2
    assert -0.1 < numbers["init.depth_slope"] < -0.03


def test_exponential_in_depth_does_not_hold():
    # density that doubles and more with each layer at fixed N (as the worst case does): slope log 3
    verdict, numbers = verdict_of(_frame(lambda n, d: 0.01 * n * 3.0**d))
    assert numbers["init.depth_slope"] == pytest.approx(math.log(3.0), abs=0.02)
    assert verdict.held is False


def test_density_independent_of_neurons_is_not_a_success():
    verdict, numbers = verdict_of(_frame(lambda n, d: 2.0, noise=0.2))
    assert verdict.held is not True
    assert numbers["init.neuron_p"] > 0.05


def test_counts_near_the_serra_bound_do_not_hold():
    verdict, numbers = verdict_of(_frame(lambda n, d: 0.05 * n, bound_fraction=0.5))
    assert numbers["max_bound_fraction_deepest"] == 0.5
    assert verdict.held is False


def test_ols_matches_a_known_line():
    x = np.arange(10.0)
    y = 3.0 + 2.0 * x + np.array([0.1, -0.1] * 5)
    coef, se, t, df = ols(np.column_stack([np.ones_like(x), x]), y, 1, null=2.0)
    assert coef == pytest.approx(2.0, abs=0.02) and df == 8
    assert se > 0 and t == pytest.approx((coef - 2.0) / se)


def test_pipeline_tiny(tmp_path):
    payload = run_experiment("linear_regions", tmp_path, overrides=_TINY, progress=False)
    for name in ("linear_regions.html", "linear_regions.json", "linear_regions.svg"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "linear_regions.json").read_text())
    assert saved["verdict"]["held"] in (True, False, None)
    assert payload["models"] == 12
    assert "init.depth_slope" in saved["numbers"]


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("search.grid.params.neurons", [32, 64], "search.grid.params.neurons"),
        ("search.grid.params.depth", [2], "search.grid.params.depth"),
        ("search.grid.params.neurons", [30, 64, 128], "search.grid.params.neurons"),
        ("seeds", [0], "seeds"),
        ("params.lines", 1, "params.lines"),
    ],
)
def test_check_refuses_meaningless_settings(key, value, path):
    with pytest.raises(SpecError) as error:
        experiment_spec("linear_regions", "small", {key: value})
    assert any(p == path for p, _ in error.value.problems)


@pytest.mark.slow
def test_small_budget(tmp_path):
    payload = run_experiment("linear_regions", tmp_path, progress=False)
    assert (tmp_path / "linear_regions.html").is_file()
    assert payload["verdict"]["held"] is True
