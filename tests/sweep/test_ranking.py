"""Oracle tests of the population ranking: populations whose τ, Ψ and CMI are known in advance."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from deepscope.errors import InvalidParameterError
from deepscope.generalization.ranking import kendall_tau
from deepscope.sweep.ranking import measure_family, rank_population


def _population(seeds: int = 2, rng_seed: int = 0) -> pd.DataFrame:
    """A 3 x 3 grid (width, lr) x seeds, with a random (distinct) gap per model."""
    rows = list(itertools.product([8, 16, 32], [0.01, 0.1, 0.5], range(seeds)))
    frame = pd.DataFrame(rows, columns=["model.width", "train.lr", "seed"])
    frame["gap"] = np.random.default_rng(rng_seed).permutation(len(frame)) / len(frame)
    return frame


def _row(ranking, name):
    return next(row for row in ranking.rows() if row["measure"] == name)


def test_a_measure_equal_to_the_gap_ranks_perfectly_and_its_negation_perfectly_backwards():
    frame = _population()
    frame["measures.same"] = frame["gap"]
    frame["measures.negated"] = -frame["gap"]
    ranking = rank_population(frame, ["model.width", "train.lr"], bootstrap=50)
    same, negated = _row(ranking, "same"), _row(ranking, "negated")
    assert same["kendall_tau"] == pytest.approx(1.0) and same["psi"] == pytest.approx(1.0)
    assert same["psi_model.width"] == pytest.approx(1.0) and same["psi_train.lr"] == pytest.approx(1.0)
    assert same["cmi"] == pytest.approx(1.0)  # V_μ = V_g: I(V_μ; V_g | U) = H(V_g | U) for every S
    assert negated["kendall_tau"] == pytest.approx(-1.0) and negated["psi"] == pytest.approx(-1.0)
    # A resample only repeats models, so τ stays exactly ±1 in every draw: zero spread.
    assert same["kendall_tau_se"] == pytest.approx(0.0) and same["kendall_tau_low"] == pytest.approx(1.0)
    assert negated["kendall_tau_high"] == pytest.approx(-1.0)
    assert ranking.models == len(frame) and ranking.bootstrap == 50


def test_an_independent_random_measure_has_a_small_tau():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"model.width": rng.integers(0, 4, 300), "gap": rng.random(300)})
    frame["measures.noise"] = rng.random(300)
    row = _row(rank_population(frame, ["model.width"], bootstrap=50), "noise")
    # Under independence τ has standard deviation sqrt(2(2n+5)/(9n(n-1))) = 0.039 for n = 300; 0.15 is ~4 of them.
    assert abs(row["kendall_tau"]) < 0.15
    assert row["kendall_tau_low"] < 0.0 < row["kendall_tau_high"]  # the 90% interval covers the true value 0


def test_the_bootstrap_standard_error_shrinks_with_more_models():
    def standard_error(models: int) -> float:
        rng = np.random.default_rng(2)
        gap = rng.random(models)
        frame = pd.DataFrame({"h": rng.integers(0, 3, models), "gap": gap, "measures.noisy": gap + rng.random(models)})
        return _row(rank_population(frame, ["h"], bootstrap=200, seed=3), "noisy")["kendall_tau_se"]

    small, large = standard_error(25), standard_error(250)
    # The standard error of τ falls like 1/sqrt(n): ten times the models give about a third of it.
    assert large < small / 2, (small, large)


def test_psi_of_a_measure_constant_within_groups_matches_a_hand_computation():
    # μ = a depends on a only. Groups with b fixed: b=0 has gaps (.1,.3,.2) -> τ = (1 + 1 - 1)/3 = 1/3;
    # b=1 has gaps (.1,.2,.3) -> τ = 1; so ψ_a = 2/3. Groups with a fixed have a constant μ -> τ undefined,
    # ψ_b is NaN and Ψ averages the defined ψ only: Ψ = 2/3. Over all six models τ-b = 8/sqrt(12·12) = 2/3
    # (8 = concordant - discordant pairs; 12 = pairs not tied in μ = pairs not tied in the gap).
    frame = pd.DataFrame({"a": [0, 1, 2, 0, 1, 2], "b": [0, 0, 0, 1, 1, 1], "gap": [0.1, 0.3, 0.2, 0.1, 0.2, 0.3]})
    frame["measures.by_a"] = frame["a"].astype(float)
    row = _row(rank_population(frame, ["a", "b"], bootstrap=0), "by_a")
    assert row["psi_a"] == pytest.approx(2 / 3)
    assert math.isnan(row["psi_b"])
    assert row["psi"] == pytest.approx(2 / 3)
    assert row["kendall_tau"] == pytest.approx(2 / 3)
    assert math.isnan(row["kendall_tau_se"]) and row["bootstrap_valid"] == 0  # bootstrap=0: none drawn


def test_models_with_a_nan_measure_are_dropped_for_that_measure_only_and_counted():
    frame = _population()
    frame["measures.partial"] = frame["gap"].where(frame.index % 6 != 0)  # 3 of 18 models NaN
    frame["measures.none"] = math.nan
    frame["measures.full"] = frame["gap"] * 2
    ranking = rank_population(frame, ["model.width", "train.lr"], bootstrap=20)
    partial, none, full = _row(ranking, "partial"), _row(ranking, "none"), _row(ranking, "full")
    assert (partial["models_used"], partial["models_dropped"]) == (15, 3)
    assert partial["kendall_tau"] == pytest.approx(1.0)
    assert (full["models_used"], full["models_dropped"]) == (18, 0)
    assert none["models_used"] == 0 and math.isnan(none["kendall_tau"]) and math.isnan(none["psi"])
    assert ranking.rows()[-1]["measure"] == "none"  # undefined τ sorts last
    assert any("partial (3)" in note and "none (18)" in note for note in ranking.notes)


def test_rows_are_sorted_by_absolute_tau():
    rng = np.random.default_rng(4)
    frame = _population()
    frame["measures.weak"] = frame["gap"] + rng.normal(0, 0.5, len(frame))
    frame["measures.strong_negative"] = -frame["gap"] + rng.normal(0, 0.01, len(frame))
    frame["measures.medium"] = frame["gap"] + rng.normal(0, 0.1, len(frame))
    taus = [abs(row["kendall_tau"]) for row in rank_population(frame, ["train.lr"], bootstrap=0).rows()]
    assert taus == sorted(taus, reverse=True)


def test_the_bootstrap_is_seeded_and_a_measure_does_not_depend_on_the_others():
    rng = np.random.default_rng(5)
    frame = _population()
    frame["measures.a"] = frame["gap"] + rng.normal(0, 0.2, len(frame))
    frame["measures.b"] = rng.random(len(frame))
    axes = ["model.width", "train.lr"]
    both = _row(rank_population(frame, axes, bootstrap=40, seed=7), "a")
    alone = _row(rank_population(frame.drop(columns="measures.b"), axes, bootstrap=40, seed=7), "a")
    assert both == alone
    other = _row(rank_population(frame, axes, bootstrap=40, seed=8), "a")
    assert other["kendall_tau_se"] != both["kendall_tau_se"]
    assert both["kendall_tau"] == pytest.approx(kendall_tau(frame["measures.a"], frame["gap"]))
    assert both["kendall_tau_low"] <= both["kendall_tau"] <= both["kendall_tau_high"]


def test_an_empty_population_or_one_without_measures_gives_an_empty_table_with_a_reason():
    assert rank_population(pd.DataFrame(), ["x"]).rows() == []
    assert "No finished models" in rank_population(pd.DataFrame(), ["x"]).notes[0]
    no_measures = _population()
    assert "computed no measures" in rank_population(no_measures, ["train.lr"]).notes[0]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"bootstrap": -1}, "bootstrap"),
        ({"confidence": 1.5}, "confidence"),
        ({"hyperparameters": ["missing.column"]}, "hyperparameters"),
        ({"frame": [1, 2, 3]}, "frame"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, name):
    arguments = {"frame": _population(), "hyperparameters": ["train.lr"], **kwargs}
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of rank_population"):
        rank_population(arguments.pop("frame"), arguments.pop("hyperparameters"), **arguments)


def test_the_family_table_matches_what_measures_reports():
    """Every measure deepscope computes has its family here (the store keeps values, not families)."""
    from deepscope.generalization import measures
    from deepscope.testing import make_fixture

    result = measures(make_fixture("relu_mlp").problem(), max_samples=16, sharpness_samples=1, bisection_steps=2)
    for measure in result.measures:
        assert measure_family(measure.name) == measure.family, measure.name
        assert measure_family("measures." + measure.name) == measure.family
    assert measure_family("something_new") == "other"
