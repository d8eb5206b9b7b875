"""From a spec to its trials: stable order, extendable random search, stable keys."""

from __future__ import annotations

import math

import pytest

from deepscope.sweep._expand import canonical_json, expand, trial_key
from deepscope.sweep.spec import parse_spec

BASE = {"name": "t", "seeds": [0, 1], "dataset": {"name": "digits"}, "model": {"arch": "mlp"}}


def test_grid_points_times_seeds_in_a_stable_order():
    spec = parse_spec({**BASE, "search": {"grid": {"model.width": [8, 16], "train.lr": [0.1, 0.01]}}})
    configs = expand(spec)
    assert len(configs) == 2 * 2 * 2
    assert [(c["model"]["width"], c["train"]["lr"], c["seed"]) for c in configs[:3]] == [
        (8, 0.1, 0),
        (8, 0.1, 1),
        (8, 0.01, 0),
    ]
    assert configs[0]["dataset"]["name"] == "digits" and "kind" not in configs[0]
    configs[0]["model"]["width"] = 999  # every config is its own copy
    assert spec["model"]["width"] != 999 and configs[2]["model"]["width"] == 8


def test_random_search_keeps_earlier_draws_when_extended():
    def spec(samples):
        search = {"kind": "random", "samples": samples, "seed": 3, "grid": {"train.lr": {"loguniform": [1e-3, 1e-1]}}}
        return parse_spec({**BASE, "seeds": [0], "search": search})

    few, more = expand(spec(3)), expand(spec(5))
    assert [c["train"]["lr"] for c in more[:3]] == [c["train"]["lr"] for c in few]
    assert all(1e-3 <= c["train"]["lr"] <= 1e-1 for c in more)


def test_keys_depend_on_the_settings_only():
    a = {"b": 1, "a": [1.5, None]}
    assert canonical_json(a) == '{"a":[1.5,null],"b":1}'
    assert trial_key(a) == trial_key({"a": [1.5, None], "b": 1})
    assert trial_key(a) != trial_key({**a, "b": 2}) and len(trial_key(a)) == 16
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})
