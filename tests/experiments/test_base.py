"""The gallery's machinery: experiment lookup, budgets, overrides, meaningfulness checks (the index page
is tested in test__gallery.py, the CLI's errors in tests/cli/test_experiment.py). Each experiment's own
logic is tested in its own file."""

import pytest

from deepscope.errors import InvalidParameterError
from deepscope.experiments import BUDGETS, EXPERIMENTS, experiment_spec
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


def test_a_rerun_resumes_from_the_store_and_retrains_nothing(tmp_path):
    """An experiment's sweep lives in its output folder: running it again reuses every finished trial."""
    from deepscope.experiments import run_experiment
    from deepscope.sweep import SweepStore
    from tests.experiments.test_heavy_tails import _TINY

    first = run_experiment("heavy_tails", tmp_path, overrides=_TINY, progress=False)
    store = tmp_path / "heavy_tails-small.db"
    with SweepStore(store, create=False) as opened:
        finished = {t["key"]: t["finished"] for t in opened.trials()}
    second = run_experiment("heavy_tails", tmp_path, overrides=_TINY, progress=False)
    with SweepStore(store, create=False) as opened:
        again = {t["key"]: (t["finished"], t["attempts"]) for t in opened.trials()}
    assert {key: value[0] for key, value in again.items()} == finished  # no trial ran again
    assert all(attempts == 1 for _, attempts in again.values())
    assert second["verdict"] == first["verdict"] and second["numbers"] == first["numbers"]
