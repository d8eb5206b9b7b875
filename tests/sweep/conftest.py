"""Tiny sweep specs: digits, 120 training examples, a few epochs; a trial takes well under a second."""

import copy

import pytest


def tiny_spec(**overrides):
    spec = {
        "name": "tiny",
        "seeds": [0, 1],
        "dataset": {"name": "digits"},
        "data": {"train_size": 120},
        "model": {"arch": "mlp", "width": 8, "depth": 1},
        "train": {"max_epochs": 3, "lr": 0.05, "batch_size": 32},
        "search": {"grid": {"model.width": [4, 8]}},
        "analyses": [{"name": "spectral_metrics"}],
    }
    for path, value in overrides.items():
        target = spec
        *parents, last = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return copy.deepcopy(spec)


@pytest.fixture
def spec():
    return tiny_spec()
