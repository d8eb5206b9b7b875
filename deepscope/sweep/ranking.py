"""Which generalization measure predicts the gap over a population of trained models, and how surely.

Over the finished trials of a sweep, every metric named ``measures.<name>`` is ranked against the
``gap`` column (test error − train error) with the criteria of Jiang et al. 2020, "Fantastic
Generalization Measures and Where to Find Them", computed by :mod:`deepscope.generalization.ranking`:

* Kendall's τ-b between the measure and the gap over all models;
* the granulated τ, Ψ = (1/k) Σ_i ψ_i, with the k searched hyperparameters (the keys of the spec's
  ``search.grid``) as the axes: ψ_i averages τ over groups of models that differ only in
  hyperparameter i (and the seed);
* the conditional-mutual-information score ``min_S I(V_μ; V_g | U_S) / H(V_g | U_S)`` over sets S of
  at most two hyperparameters, with the score of every S kept as the CMI table.

**Uncertainty** comes from a bootstrap over models (Efron 1979): B resamples of the models, drawn with
replacement with a seeded generator, and τ and Ψ recomputed on each. The standard error is the
standard deviation of the B values and the interval is their 5th-95th percentile (a 90% percentile
interval). Ψ's bootstrap resamples *whole models*, not hyperparameter groups: a resample keeps a
model's hyperparameters, so the groups of a resample are the original groups with some models
repeated and some missing (a group left with a single distinct model drops out of that draw). The
resampling unit is the model because the models are the independent draws; the spread therefore
also reflects which groups happen to be complete, which is part of the uncertainty of Ψ on a
population of this size. CMI is reported without a bootstrap (it costs O(models²) per set S).

**Missing values.** A measure can be NaN for some models (a layer it cannot handle, a bound that
is infinite): for each measure the models where it (or the gap) is NaN are dropped, for that
measure only, and ``models_dropped`` says how many. Ties created by repeated models in a resample
count as ties in τ-b (neither concordant nor discordant).

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"model.width": [8, 8, 16, 16], "gap": [0.1, 0.2, 0.3, 0.4],
    ...                       "measures.m": [1.0, 2.0, 3.0, 4.0]})
    >>> ranking = rank_population(frame, ["model.width"], bootstrap=20)
    >>> ranking.rows()[0]["kendall_tau"]
    1.0
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepscope.errors import DataError, invalid_parameter
from deepscope.generalization.ranking import conditional_mutual_information, granulated_tau, kendall_tau
from deepscope.results import Result

__all__ = ["SweepRanking", "rank_population", "rank_sweep", "measure_family", "MEASURE_PREFIX"]

MEASURE_PREFIX = "measures."

# The family of each measure of deepscope.generalization.measures (MeasureValue.family); the store keeps
# values only, so the report looks families up here. tests/sweep/test_ranking.py checks this table against
# what measures() returns, so a new measure cannot be missed silently.
_FAMILIES = {
    "parameter_count": "size",
    "frobenius_distance": "distance",
    "spectral_distance": "distance",
    "l2_distance": "distance",
    "margin_10th_percentile": "margin",
    "inverse_margin": "margin",
    "output_entropy": "margin",
    "fisher_rao_norm": "gradient",
    "gradient_noise": "gradient",
    "mean_alpha": "spectral",
    "mean_alpha_weighted": "spectral",
    "mean_stable_rank": "spectral",
    "sum_log_spectral_norm": "spectral",
}
_NORMS = (
    "log_product_frobenius",
    "log_sum_frobenius",
    "log_product_spectral",
    "log_sum_spectral",
    "log_product_frobenius_over_margin",
    "log_product_spectral_over_margin",
    "parameter_norm",
    "spectral_margin_orig",
    "pac_bayes_spectral_orig",
    "spectral_margin_init",
    "pac_bayes_spectral_init",
    "path_norm",
    "path_norm_over_margin",
)
_FAMILIES.update(dict.fromkeys(_NORMS, "norm"))
_SHARPNESS_PREFIXES = ("pac_bayes_", "sharpness_", "worst_case_sharpness")


def measure_family(name: str) -> str:
    """The family of a measure ("norm", "margin", "sharpness", ...), "other" if unknown.

    ``name`` may carry the ``measures.`` prefix. PAC-Bayes measures built on spectral norms
    (``pac_bayes_spectral_*``) are norm-based, as in Jiang et al. 2020; the other ``pac_bayes_*`` and
    ``sharpness_*`` measures are the sharpness family.
    """
    bare = name[len(MEASURE_PREFIX) :] if name.startswith(MEASURE_PREFIX) else name
    if bare in _FAMILIES:
        return _FAMILIES[bare]
    if bare.startswith(_SHARPNESS_PREFIXES):
        return "sharpness"
    return "other"


@dataclasses.dataclass(frozen=True)
class SweepRanking(Result):
    """τ, Ψ (with bootstrap standard errors and 90% intervals) and CMI of every measure of a population.

    Attributes:
        table: one row per measure, sorted by |τ| (largest first; NaN last): ``measure`` (without the
            ``measures.`` prefix), ``family``, ``models_used``, ``models_dropped`` (NaN values),
            ``kendall_tau``, ``kendall_tau_se``, ``kendall_tau_low``/``_high`` (the interval), ``psi``,
            ``psi_se``, ``psi_low``/``_high``, ``cmi``, one ``psi_<hyperparameter>`` per axis, and
            ``bootstrap_valid`` (draws where τ was defined).
        cmi_table: measure -> {conditioning set ("" is the empty set, "a,b" a pair) -> normalised CMI}.
        models: models in the population (finite gap). hyperparameters: the granulation axes.
        bootstrap: resamples per measure (B). confidence: coverage of the intervals. seed: the
            bootstrap seed. notes: what was left out and why.
    """

    table: list[dict[str, Any]]
    cmi_table: dict[str, dict[str, float]]
    models: int
    hyperparameters: list[str]
    bootstrap: int
    confidence: float
    seed: int
    notes: list[str]

    def rows(self) -> list[dict[str, Any]]:
        return self.table


def _hashable(value: Any) -> Any:
    """Grid values as group keys: lists (e.g. a list of widths) become their JSON text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value.item() if isinstance(value, np.generic) else value


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(standard error, low, high) of the finite bootstrap values; NaN when fewer than two."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return math.nan, math.nan, math.nan
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(finite.std(ddof=1)), float(low), float(high)


def _rank_one(
    name: str,
    measure: np.ndarray,
    gap: np.ndarray,
    axes: dict[str, list[Any]],
    bootstrap: int,
    confidence: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, float]]:
    keep = np.isfinite(measure) & np.isfinite(gap)
    used = int(keep.sum())
    row: dict[str, Any] = {
        "measure": name,
        "family": measure_family(name),
        "models_used": used,
        "models_dropped": int(measure.size - used),
    }
    nan_row = dict.fromkeys(
        ["kendall_tau", "kendall_tau_se", "kendall_tau_low", "kendall_tau_high"]
        + ["psi", "psi_se", "psi_low", "psi_high", "cmi"],
        math.nan,
    )
    row.update(nan_row)
    row.update({f"psi_{axis}": math.nan for axis in axes})
    row["bootstrap_valid"] = 0
    if used < 2:
        return row, {}
    mu, g = measure[keep], gap[keep]
    hp = {axis: [values[i] for i in np.flatnonzero(keep)] for axis, values in axes.items()}
    row["kendall_tau"] = kendall_tau(mu, g)
    cmi_parts: dict[str, float] = {}
    if hp:
        psi, parts = granulated_tau(mu, g, hp)
        row["psi"] = psi
        row.update({f"psi_{axis}": value for axis, value in parts.items()})
        row["cmi"], cmi_parts = conditional_mutual_information(mu, g, hp)
    else:
        row["cmi"], cmi_parts = conditional_mutual_information(mu, g, {})
    if bootstrap:
        # One generator per measure, seeded by (seed, name): a measure's interval does not depend on
        # which other measures the sweep computed or in what order.
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        taus, psis = np.full(bootstrap, math.nan), np.full(bootstrap, math.nan)
        for b in range(bootstrap):
            draw = rng.integers(0, used, size=used)
            taus[b] = kendall_tau(mu[draw], g[draw])
            if hp:
                psis[b] = granulated_tau(mu[draw], g[draw], {a: [v[i] for i in draw] for a, v in hp.items()})[0]
        row["kendall_tau_se"], row["kendall_tau_low"], row["kendall_tau_high"] = _interval(taus, confidence)
        row["psi_se"], row["psi_low"], row["psi_high"] = _interval(psis, confidence)
        row["bootstrap_valid"] = int(np.isfinite(taus).sum())
    return row, cmi_parts


def rank_population(
    frame: Any,
    hyperparameters: Sequence[str],
    *,
    gap: str = "gap",
    bootstrap: int = 200,
    confidence: float = 0.9,
    seed: int = 0,
) -> SweepRanking:
    """Rank every ``measures.*`` column of a population against its gap, with bootstrap uncertainty.

    Args:
        frame: a pandas DataFrame with one row per model (as :func:`deepscope.sweep.load` returns).
        hyperparameters: the columns that are granulation axes (a sweep's searched keys).
        gap: the column holding each model's generalization gap.
        bootstrap: resamples of the models (B >= 0; 0 skips the bootstrap).
        confidence: coverage of the percentile interval, in (0, 1).
        seed: seed of the bootstrap generator.

    Returns:
        A :class:`SweepRanking` (rows sorted by |τ|). An empty frame, or one without measures, gives
        an empty table and a note saying why.

    Raises:
        InvalidParameterError: a bad argument, or a hyperparameter column that is not in the frame.
    """
    import pandas as pd

    owner = "rank_population"
    if not isinstance(frame, pd.DataFrame):
        raise invalid_parameter("frame", owner, "a pandas DataFrame (deepscope.sweep.load)", frame)
    if isinstance(hyperparameters, str) or not all(isinstance(h, str) for h in hyperparameters):
        raise invalid_parameter("hyperparameters", owner, "a list of column names", hyperparameters)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise invalid_parameter("bootstrap", owner, "an int >= 0", bootstrap)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise invalid_parameter("confidence", owner, "a float in (0, 1)", confidence)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise invalid_parameter("seed", owner, "an int", seed)
    axes = list(hyperparameters)
    columns = list(frame.columns)
    notes: list[str] = []
    empty = SweepRanking([], {}, 0, axes, bootstrap, float(confidence), seed, notes)
    if frame.empty:
        notes.append("No finished models yet: nothing to rank.")
        return empty
    missing = [axis for axis in axes if axis not in columns]
    if missing:
        raise invalid_parameter("hyperparameters", owner, "columns of the frame (" + ", ".join(columns) + ")", missing)
    if gap not in columns:
        notes.append(f"The population has no {gap!r} column (no test split?): nothing to rank.")
        return empty
    names = [c for c in columns if c.startswith(MEASURE_PREFIX) and not c.endswith(".stderr")]
    if not names:
        notes.append("The sweep computed no measures (add the 'measures' analysis to the spec): nothing to rank.")
        return empty
    gaps = pd.to_numeric(frame[gap], errors="coerce").to_numpy(dtype=np.float64)
    table, cmi_table = [], {}
    values = {axis: [_hashable(v) for v in frame[axis].tolist()] for axis in axes}
    varied = {axis: column for axis, column in values.items() if len(set(column)) > 1}
    if len(varied) < len(axes):
        notes.append("Constant hyperparameters are not granulation axes: " + ", ".join(sorted(set(axes) - set(varied))))
    for column in names:
        measure = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        try:
            row, parts = _rank_one(
                column[len(MEASURE_PREFIX) :], measure, gaps, varied, bootstrap, float(confidence), seed
            )
        except DataError as error:  # pragma: no cover - guarded by the NaN filter above
            notes.append(f"{column}: {error}")
            continue
        table.append(row)
        cmi_table[row["measure"]] = parts
    dropped = [f"{r['measure']} ({r['models_dropped']})" for r in table if r["models_dropped"]]
    if dropped:
        notes.append("Models dropped where a measure is NaN, per measure: " + ", ".join(dropped))
    table.sort(
        key=lambda r: (
            not math.isfinite(r["kendall_tau"]),
            -abs(r["kendall_tau"]) if math.isfinite(r["kendall_tau"]) else 0.0,
        )
    )
    models = int(np.isfinite(gaps).sum())
    return SweepRanking(table, cmi_table, models, list(varied), bootstrap, float(confidence), seed, notes)


def rank_sweep(store: Any, *, bootstrap: int = 200, confidence: float = 0.9, seed: int = 0) -> SweepRanking:
    """:func:`rank_population` of a sweep store's finished trials, the searched keys as the axes."""
    from deepscope.sweep.runner import load
    from deepscope.sweep.store import SweepStore

    with SweepStore(store, create=False) as sweep:
        spec = sweep.spec() or {}
    axes = list(spec.get("search", {}).get("grid", {}))
    return rank_population(load(store), axes, bootstrap=bootstrap, confidence=confidence, seed=seed)
