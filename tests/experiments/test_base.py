"""The gallery's machinery: experiment lookup, budgets, overrides, meaningfulness checks, the index page
and the CLI's errors. Each experiment's own logic is tested in its own file."""

import json

import pytest

from deepscope.cli import main
from deepscope.errors import InvalidParameterError
from deepscope.experiments import BUDGETS, EXPERIMENTS, experiment_spec, write_index
from deepscope.experiments._base import experiment_module
from deepscope.sweep import SpecError, expand


@pytest.mark.parametrize("name", EXPERIMENTS)
@pytest.mark.parametrize("budget", BUDGETS)
def test_every_experiment_has_a_valid_spec_at_both_budgets_and_its_page_texts(name, budget):
    spec = experiment_spec(name, budget)
    assert expand(spec)  # at least one trial
    module = experiment_module(name)
    assert module.NAME == name and module.TITLE and module.CLAIM and module.REFERENCES
    assert isinstance(module.protocol(spec), str) and module.protocol(spec)


def test_full_budgets_are_larger_than_small_ones():
    for name in EXPERIMENTS:
        assert len(expand(experiment_spec(name, "full"))) >= len(expand(experiment_spec(name, "small"))), name


def test_unknown_experiment_and_budget():
    with pytest.raises(InvalidParameterError, match="double_descent"):
        experiment_spec("grokking")
    with pytest.raises(InvalidParameterError, match="'small', 'full'"):
        experiment_spec("random_labels", "huge")


def test_overrides_apply_and_meaningless_ones_are_refused():
    spec = experiment_spec("random_labels", overrides={"seeds": [0, 1, 2, 3]})
    assert spec["seeds"] == [0, 1, 2, 3]
    with pytest.raises(SpecError) as caught:
        experiment_spec("random_labels", overrides={"seeds": [0]})
    assert "seeds" in dict(caught.value.problems)
    assert "needs it to test its claim" in str(caught.value)
    with pytest.raises(SpecError, match="train.lr"):
        experiment_spec("random_labels", overrides={"train.lr": -1})


def test_index_lists_verdicts_and_errors(tmp_path):
    entries = [
        {"experiment": "a", "title": "A & B", "claim": "c1", "page": "a.html",
         "verdict": {"held": True, "detail": "p = 0.01"}},
        {"experiment": "b", "title": "B", "claim": "c2", "page": "b.html", "verdict": {"held": None, "detail": "few"}},
        {"experiment": "c", "title": "C", "claim": "c3", "page": "c.html", "error": "boom"},
    ]  # fmt: skip
    path = write_index(tmp_path, entries)
    page = path.read_text()
    assert 'href="a.html"' in page and "A &amp; B" in page
    assert "held — p = 0.01" in page and "inconclusive — few" in page and "not run: boom" in page
    assert "1 of 3 claims held" in page
    assert "http://" not in page and "https://" not in page
    assert json.loads((tmp_path / "index.json").read_text())["experiments"][2]["error"] == "boom"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["experiment", "grokking", "--out", "g"], "one of double_descent"),
        (["experiment", "random_labels", "--out", "g", "--budget", "huge"], "'huge' is not one of"),
        (["experiment", "random_labels", "--out", "g", "--set", "seeds"], "PATH=VALUE"),
        (["experiment", "random_labels", "--out", "g", "--set", "seeds=[0]"], "seeds"),
        (["experiment", "all", "--out", "g", "--set", "seeds=[0,1]"], "one experiment"),
        (["experiment", "random_labels", "--out", "g", "--workers", "64"], "workers"),
    ],
)
def test_cli_errors_are_one_line_and_run_nothing(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    status = main(args)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").glob("*.db"))
