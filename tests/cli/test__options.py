"""The CLI's shared options: finite floats, shapes, history files and the seed that fixes the split."""

from __future__ import annotations

import json
import os
import sys

import click
import pytest

from deepscope.cli._options import (
    FiniteFloat,
    _parse_arch_kwargs,
    _parse_shape,
    check_seed,
    load_history,
    recorded_seed,
    strip_cwd_from_path,
)
from deepscope.errors import DataError


def test_finite_float():
    assert FiniteFloat()("2.5", None, None) == 2.5
    for bad, words in (("nan", "not a finite number"), ("inf", "not a finite number"), ("x", "not a number")):
        with pytest.raises(click.BadParameter, match=words):
            FiniteFloat()(bad, None, None)
    with pytest.raises(click.BadParameter, match="0 is not > 0"):
        FiniteFloat(minimum=0)("0", None, None)


def test_parse_shape():
    assert _parse_shape(None, None, "1,28,28") == (1, 28, 28) == _parse_shape(None, None, "1x28x28")
    assert _parse_shape(None, None, None) is None
    with pytest.raises(click.BadParameter, match="not a shape such as 1,28,28"):
        _parse_shape(None, None, "1,a")
    for bad in ("0,3", "1,2,3,4,5"):
        with pytest.raises(click.BadParameter, match="1 to 4 sizes, each >= 1"):
            _parse_shape(None, None, bad)


def _history(path, **fields):
    record = {"generator": "deepscope", "data": "digits", "seed": 3, "learning_rate": 0.05}
    record["history"] = {
        "epoch": [1],
        "train_loss": [0.5],
        "test_loss": [None],
        "train_accuracy": [0.9],
        "test_accuracy": [None],
        "n_train": 10,
        "n_test": 0,
        "steps": 4,
    }
    record.update(fields)
    path.write_text(json.dumps(record))
    return path


def test_recorded_seed_and_check_seed(tmp_path):
    model = tmp_path / "model.safetensors"
    assert recorded_seed(model, "digits") == (None, None)
    history = _history(tmp_path / "history.json")
    assert recorded_seed(model, "digits") == (3, history)
    assert recorded_seed(model, "wine") == (None, None)  # trained on other data: the seed says nothing
    assert check_seed(None, model, "digits", None, None) == 3
    assert check_seed(3, model, "digits", None, None) == 3
    with pytest.raises(DataError, match="--seed 4 differs from the seed 3 the model was trained with"):
        check_seed(4, model, "digits", None, None)
    assert check_seed(None, tmp_path / "elsewhere" / "m.pt", "digits", None, None) == 0
    assert check_seed(None, model, "digits", history, 7) == 7  # an explicit --history wins


def test_load_history(tmp_path):
    assert load_history(None) == (None, None, None)
    history, lr, seed = load_history(_history(tmp_path / "h.json"))
    assert lr == 0.05 and seed == 3 and history.epoch == [1] and history.steps == 4
    assert load_history(_history(tmp_path / "h3.json", learning_rate=None, seed=True))[1:] == (None, None)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a JSON file written by 'deepscope train'"):
        load_history(bad)
    with pytest.raises(DataError, match="not a history.json"):
        load_history(_history(tmp_path / "h2.json", history={}))


def test_strip_cwd_from_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", ".", str(tmp_path), "/usr/lib/python3"])
    strip_cwd_from_path()
    assert sys.path == ["/usr/lib/python3"] and os.getcwd() == str(tmp_path)


def test_arch_kwargs_is_a_json_object():
    assert _parse_arch_kwargs(None, None, '{"width": 64, "channels": [8, 16]}') == {"width": 64, "channels": [8, 16]}
    assert _parse_arch_kwargs(None, None, None) is None
    for bad, words in (
        ("{width: 64}", "is not JSON"),
        ("[1, 2]", "is a JSON list, not an object"),
        ('"text"', "is a JSON str, not an object"),
        ('{"lr": NaN}', "NaN is not a finite number"),
        ('{"lr": Infinity}', "Infinity is not a finite number"),
    ):
        with pytest.raises(click.BadParameter, match=words):
            _parse_arch_kwargs(None, None, bad)
