import json

import pytest

from deepscope.models import TrainingHistory, TrainingRun, generalization_gap, train
from deepscope.testing import make_fixture


def small_history(**overrides):
    fields = {
        "epoch": [0, 1, 2],
        "train_loss": [2.3, 0.6, 0.3],
        "test_loss": [2.3, 0.7, 0.5],
        "train_accuracy": [0.1, 0.8, 0.95],
        "test_accuracy": [0.1, 0.75, 0.9],
        "n_train": 300,
        "n_test": 100,
        "steps": 10,
    }
    return TrainingHistory(**{**fields, **overrides})


def test_rows_one_per_epoch():
    rows = small_history().rows()
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert rows[-1] == {"epoch": 2, "train_loss": 0.3, "test_loss": 0.5, "train_accuracy": 0.95, "test_accuracy": 0.9}


def test_gap_uses_the_final_epoch_and_the_test_size():
    gap = small_history().generalization_gap
    expected = generalization_gap(0.95, 0.9, 100, n_train=300)
    assert gap == expected
    assert gap.gap == pytest.approx(0.05)


def test_no_test_split_means_no_gap_and_one_curve_per_panel():
    history = small_history(test_loss=[None] * 3, test_accuracy=[None] * 3, n_test=0)
    assert history.generalization_gap is None
    figure = history.plot()
    assert [len(axis.lines) for axis in figure.axes] == [1, 1]


def test_regression_history_plots_the_loss_only():
    history = small_history(train_accuracy=[None] * 3, test_accuracy=[None] * 3)
    assert len(history.plot().axes) == 1
    assert history.generalization_gap.metric == "loss"


def test_training_run_serialises_without_weights(capsys):
    fixture = make_fixture("mlp")
    data = ((fixture.inputs[:16], fixture.targets[:16]), (fixture.inputs[16:], fixture.targets[16:]))
    run = train(fixture.model, data, epochs=2, progress=True)
    assert isinstance(run, TrainingRun) and isinstance(run.history, TrainingHistory)
    text = json.loads(run.to_json())
    assert set(text) == {"type", "config", "history", "monitor", "seconds"}
    assert text["history"]["epoch"] == [0, 1, 2]
    assert [row["epoch"] for row in run.rows()] == [0, 1, 2]
    assert len(run.plot().axes) == 2
    assert "<table>" in run.history._repr_html_()
    assert "training" in capsys.readouterr().err  # the progress bar goes to stderr
