"""One trial: a pure function of its config — data subset and label noise, model, metrics, failures as data."""

from __future__ import annotations

import torch
from safetensors.torch import load

from deepscope.sweep._expand import expand, trial_key
from deepscope.sweep.spec import parse_spec
from deepscope.sweep.trial import build_model, run_trial, state_bytes, trial_data
from tests.sweep.conftest import tiny_spec


def _config(**overrides):
    return expand(parse_spec(tiny_spec(**overrides)))[0]


def test_trial_data_subsets_and_corrupts_exactly():
    clean = trial_data(_config())
    assert len(clean.x_train) == 120 and clean.mask_train is None
    noisy = trial_data(_config(**{"data.label_noise": 0.25}))
    assert torch.equal(noisy.x_train, clean.x_train)  # the same subset
    assert int((noisy.y_train != clean.y_train).sum()) == 30  # every flipped label moves to another class
    assert torch.equal(trial_data(_config(**{"data.label_noise": 0.25})).y_train, noisy.y_train)


def test_build_model_turns_width_and_depth_into_widths():
    config = _config(**{"model.depth": 2})
    model = build_model(config, trial_data(config))
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [config["model"]["width"]] * 2 + [10]


def test_a_trial_is_reproducible_and_reports_its_metrics():
    config = _config()
    first, second = run_trial(config), run_trial(config)
    assert first.error is None and first.key == trial_key(config)
    assert first.metrics == second.metrics and first.weights == second.weights
    assert {"train_loss", "test_error", "gap", "parameters", "epochs_run"} <= set(first.metrics)
    assert any(name.startswith("spectral_metrics.") for name in first.metrics)
    assert first.history["epochs_run"] == 3 and "monitor" not in first.history
    assert set(load(first.weights)) == set(build_model(config, trial_data(config)).state_dict())


def test_a_failing_trial_returns_its_error_and_restores_threads():
    threads = torch.get_num_threads()
    config = _config(**{"data.train_size": 100_000})
    output = run_trial(config, threads=1)
    assert output.error.startswith("DataError: data.train_size is 100000") and output.weights is None
    assert output.metrics == {} and torch.get_num_threads() == threads


def test_state_bytes_round_trip():
    model = torch.nn.Linear(3, 2)
    restored = load(state_bytes(model))
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())
