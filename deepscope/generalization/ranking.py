"""How well a measure ranks models by their generalization gap: Kendall τ, granulated τ Ψ, CMI.

Over a set of models with measure values ``μ`` and observed gaps ``g`` (Jiang et al. 2020):

* Kendall's τ-b (Kendall 1945, with the tie correction): the rank correlation of μ and g;
* granulated τ, Ψ = (1/k) Σ_i ψ_i, where ψ_i averages τ over the groups of models that differ
  only in hyperparameter i (all others fixed) — it asks whether the measure tracks the gap when
  one thing changes at a time;
* conditional mutual information (the PGDL score, Jiang et al. 2020 Sec. 5): for every ordered pair
  of models, ``V_g = sign(g − g')`` and ``V_μ = sign(μ − μ')``; for each set S of at most two
  hyperparameters, ``Î_S = I(V_μ; V_g | U_S) / H(V_g | U_S)`` where ``U_S`` are the two models'
  values of the hyperparameters in S; the score is ``min_S Î_S`` (PGDL reports it ×100).

Example:
    >>> round(kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]), 4)
    0.6667
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepscope.errors import DataError, describe, invalid_parameter
from deepscope.results import Result

__all__ = ["kendall_tau", "granulated_tau", "conditional_mutual_information", "MeasureRanking", "rank_measures"]


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise DataError(f"'{name}' must be numbers, one per model. Got {describe(values)} ({error}).") from error
    if array.size < 2:
        raise DataError(f"'{name}' needs at least two models to rank. Got {array.size}.")
    return array


def _check_hyperparameters(hyperparameters: Any, owner: str, models: int | None = None) -> None:
    """A mapping of hyperparameter name -> one value per model (``models`` values each, when given)."""
    if not isinstance(hyperparameters, Mapping):
        expected = "a mapping of hyperparameter name -> one value per model"
        raise invalid_parameter("hyperparameters", owner, expected, hyperparameters)
    for name, values in hyperparameters.items():
        if models is not None and (not hasattr(values, "__len__") or len(values) != models):
            count = len(values) if hasattr(values, "__len__") else "no"
            raise DataError(f"hyperparameter '{name}' has {count} values for {models} models.")


def kendall_tau(measure: Sequence[float], gap: Sequence[float]) -> float:
    """Kendall's τ-b between a measure and the gap over models (NaN values are dropped pairwise).

    Args:
        measure: one value per model, ``(models,)``.
        gap: the observed generalization gap per model, ``(models,)``.

    Returns:
        τ-b in [−1, 1]; NaN when either variable is constant.
    """
    a, b = _as_array(measure, "measure"), _as_array(gap, "gap")
    if a.shape != b.shape:
        raise DataError(f"measure and gap must have one value per model. Got {a.size} and {b.size}.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 2:
        return math.nan
    i, j = np.triu_indices(a.size, k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    concordance = float((da * db).sum())
    n_a, n_b = float((da != 0).sum()), float((db != 0).sum())
    if n_a == 0 or n_b == 0:
        return math.nan
    return concordance / math.sqrt(n_a * n_b)


def granulated_tau(
    measure: Sequence[float], gap: Sequence[float], hyperparameters: Mapping[str, Sequence]
) -> tuple[float, dict[str, float]]:
    """Ψ: the mean over hyperparameters of the mean τ where only that hyperparameter varies.

    Args:
        measure, gap: one value per model.
        hyperparameters: name -> one value per model (e.g. {"width": [...], "lr": [...]}).

    Returns:
        ``(psi, {name: psi_i})``.
    """
    a, b = _as_array(measure, "measure"), _as_array(gap, "gap")
    _check_hyperparameters(hyperparameters, "granulated_tau")
    names = list(hyperparameters)
    table = {name: list(hyperparameters[name]) for name in names}
    for name, values in table.items():
        if len(values) != a.size:
            raise DataError(f"hyperparameter '{name}' has {len(values)} values for {a.size} models.")
    per_hyperparameter = {}
    for name in names:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index in range(a.size):
            groups[tuple(table[other][index] for other in names if other != name)].append(index)
        taus = [kendall_tau(a[idx], b[idx]) for idx in groups.values() if len(idx) >= 2]
        taus = [t for t in taus if math.isfinite(t)]
        per_hyperparameter[name] = float(np.mean(taus)) if taus else math.nan
    finite = [v for v in per_hyperparameter.values() if math.isfinite(v)]
    return (float(np.mean(finite)) if finite else math.nan), per_hyperparameter


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def conditional_mutual_information(
    measure: Sequence[float], gap: Sequence[float], hyperparameters: Mapping[str, Sequence], max_condition: int = 2
) -> tuple[float, dict[str, float]]:
    """The PGDL score: ``min_S I(V_μ; V_g | U_S)/H(V_g | U_S)`` over sets S of ≤ ``max_condition`` hyperparameters.

    Returns:
        ``(score in [0, 1], {"a,b": normalised CMI for each S})`` ("" is the empty set).
    """
    a, b = _as_array(measure, "measure"), _as_array(gap, "gap")
    _check_hyperparameters(hyperparameters, "conditional_mutual_information", a.size)
    if isinstance(max_condition, bool) or not isinstance(max_condition, int) or max_condition < 0:
        raise invalid_parameter("max_condition", "conditional_mutual_information", "an int >= 0", max_condition)
    names = list(hyperparameters)
    i, j = np.nonzero(~np.eye(a.size, dtype=bool))
    v_mu, v_gap = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    keep = np.isfinite(v_mu) & (v_gap != 0)
    i, j, v_mu, v_gap = i[keep], j[keep], v_mu[keep], v_gap[keep]
    scores = {}
    for size in range(0, max_condition + 1):
        for subset in itertools.combinations(names, size):
            groups: dict[tuple, list[int]] = defaultdict(list)
            for k in range(len(i)):
                key = tuple((hyperparameters[h][i[k]], hyperparameters[h][j[k]]) for h in subset)
                groups[key].append(k)
            mutual, entropy = 0.0, 0.0
            for members in groups.values():
                weight = len(members) / len(i)
                joint = defaultdict(int)
                for k in members:
                    joint[(v_mu[k], v_gap[k])] += 1
                joint_counts = np.array(list(joint.values()), dtype=np.float64)
                mu_counts = np.array([sum(c for (m, _), c in joint.items() if m == v) for v in {m for m, _ in joint}])
                gap_counts = np.array([sum(c for (_, g), c in joint.items() if g == v) for v in {g for _, g in joint}])
                h_gap = _entropy(gap_counts)
                mutual += weight * (_entropy(mu_counts) + h_gap - _entropy(joint_counts))
                entropy += weight * h_gap
            scores[",".join(subset)] = mutual / entropy if entropy > 0 else math.nan
    finite = [v for v in scores.values() if math.isfinite(v)]
    return (min(finite) if finite else math.nan), scores


@dataclasses.dataclass(frozen=True)
class MeasureRanking(Result):
    """τ, Ψ (with its per-hyperparameter parts) and the CMI score of each measure."""

    table: list[dict]
    models: int

    def rows(self) -> list[dict]:
        return self.table


def rank_measures(
    measures: Mapping[str, Sequence[float]], gap: Sequence[float], hyperparameters: Mapping[str, Sequence]
) -> MeasureRanking:
    """Kendall τ, Ψ and the CMI score for every measure (name -> one value per model).

    Example:
        >>> ranking = rank_measures({"m": [1, 2, 3, 4]}, [0.1, 0.2, 0.3, 0.4], {"width": [1, 1, 2, 2]})
        >>> ranking.rows()[0]["kendall_tau"]
        1.0
    """
    if not isinstance(measures, Mapping) or not measures:
        raise invalid_parameter(
            "measures", "rank_measures", "a non-empty mapping of measure name -> one value per model", measures
        )
    _check_hyperparameters(hyperparameters, "rank_measures")
    rows = []
    for name, values in measures.items():
        psi, parts = granulated_tau(values, gap, hyperparameters)
        cmi, _ = conditional_mutual_information(values, gap, hyperparameters)
        row = {"measure": name, "kendall_tau": kendall_tau(values, gap), "psi": psi, "cmi": cmi}
        row.update({f"psi_{k}": v for k, v in parts.items()})
        rows.append(row)
    return MeasureRanking(table=rows, models=len(gap))
