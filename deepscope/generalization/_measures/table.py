"""``measures(problem)``: every generalization measure of Jiang et al. (2020) in one table.

Each row has the measure's value, its normalised value, its family and its reference. Following
Jiang et al., a bound-like measure μ is normalised as ``√(μ/m)`` (m = training-set size); a measure
already on a log scale is normalised as ``(μ − log m)/2`` (the log of that expression). BatchNorm is
folded into the preceding layer first; layers a measure cannot handle are listed in
``unsupported_layers`` and the affected values are NaN with a note — never silently skipped.

Example:
    >>> from deepscope.testing import make_fixture
    >>> result = measures(make_fixture("relu_mlp").problem(), families=("norm", "margin"))
    >>> "path_norm" in {row["name"] for row in result.rows()}
    True
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from deepscope._validation import check_int
from deepscope.errors import invalid_parameter
from deepscope.generalization._measures._context import MeasureValue, build_context
from deepscope.generalization._measures.fisher_rao import gradient_measures
from deepscope.generalization._measures.margins import margin_measures
from deepscope.generalization._measures.norms import norm_measures
from deepscope.generalization._measures.sharpness import sharpness_measures
from deepscope.generalization._measures.spectral import spectral_metrics
from deepscope.guard import current_guard_report
from deepscope.registry import analysis
from deepscope.results import Result

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["MeasuresResult", "measures", "FAMILIES"]

FAMILIES = ("norm", "margin", "sharpness", "gradient", "spectral")


@dataclasses.dataclass(frozen=True)
class MeasuresResult(Result):
    """The measures table.

    Attributes:
        measures: one :class:`MeasureValue` per measure (name, value, family, reference, meaning, note).
        normalised: normalised values by name (see module docstring).
        train_size: m, the number of training examples.
        samples_used: training examples the data-dependent measures were evaluated on.
        forward_passes: example-forward passes spent (backward passes counted as one more).
        unsupported_layers: modules the norm measures could not handle, and why.
        family_seconds: wall time of each family (seconds); each row's ``seconds`` is the time of
            the computation it came from (one sharpness search, or its whole family otherwise),
            so rows from one computation share it and the family times are the sum to read.
        note: the model guard's note (e.g. which train-mode modules ran in eval semantics).
    """

    measures: list[MeasureValue]
    normalised: dict[str, float]
    train_size: int
    samples_used: int
    forward_passes: int
    unsupported_layers: list[str]
    family_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    note: str = ""

    def value(self, name: str) -> float:
        """The value of the measure ``name``."""
        for measure in self.measures:
            if measure.name == name:
                return measure.value
        raise invalid_parameter("name", "MeasuresResult.value", "the name of a computed measure", name)

    def rows(self) -> list[dict]:
        return [
            {
                "name": m.name,
                "value": m.value,
                "normalised": self.normalised.get(m.name, math.nan),
                "family": m.family,
                "reference": m.reference,
                "meaning": m.meaning,
                "note": m.note,
                "seconds": m.seconds,
            }
            for m in self.measures
        ]


def _normalise(measure: MeasureValue, m: int) -> float:
    if not math.isfinite(measure.value):
        return math.nan
    if measure.log_scale:
        return (measure.value - math.log(m)) / 2.0
    return math.sqrt(measure.value / m) if measure.value >= 0 else math.nan


def _spectral_rows(problem: Problem) -> list[MeasureValue]:
    result = spectral_metrics(problem.model, min_eigenvalues=20)
    note = f"{result.valid_layers} of {len(result.layers)} layers with a valid power-law fit"
    reference = "Martin & Mahoney 2021"
    return [
        MeasureValue("mean_alpha", result.mean_alpha, "spectral", reference, "mean power-law α of the ESDs", note=note),
        MeasureValue(
            "mean_alpha_weighted", result.mean_alpha_weighted, "spectral", reference, "mean α·log10 λ_max", note=note
        ),
        MeasureValue(
            "mean_stable_rank",
            sum(layer.stable_rank for layer in result.layers) / len(result.layers),
            "spectral",
            reference,
            "mean ‖W‖_F²/‖W‖₂²",
        ),
        MeasureValue(
            "sum_log_spectral_norm",
            sum(layer.log_spectral_norm for layer in result.layers),
            "spectral",
            reference,
            "Σ log10 λ_max (raw weights)",
        ),
    ]


@analysis(
    takes="problem",
    family="generalization",
    fixture="cnn",
    example_kwargs={"max_samples": 16, "families": ("norm", "margin", "gradient", "spectral")},
)
def measures(
    problem: Problem,
    *,
    families: Sequence[str] = FAMILIES,
    max_samples: int | None = 2048,
    sharpness_samples: int = 8,
    bisection_steps: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> MeasuresResult:
    """Compute the generalization measures of a trained classifier.

    Args:
        problem: a :class:`deepscope.Problem` with a classification loss; give ``init_state`` for
            the distance-from-initialisation measures.
        families: which families to compute, among "norm", "margin", "sharpness", "gradient",
            "spectral" (sharpness is the expensive one).
        max_samples: training examples used by the data-dependent measures (None: all).
        sharpness_samples: Monte-Carlo noise draws per bisection step for σ and σ'.
        bisection_steps: bisection steps of the σ, σ' and α searches.
        seed: seed of the noise draws and power iterations.
        progress: show a tqdm bar over the families (sharpness dominates the cost).

    Returns:
        :class:`MeasuresResult`, one row per measure.
    """
    if isinstance(families, str) or not isinstance(families, (list, tuple, set, frozenset)):
        raise invalid_parameter("families", "measures", "a list of family names among " + ", ".join(FAMILIES), families)
    families = tuple(families)
    for family in families:
        if family not in FAMILIES:
            raise invalid_parameter("families", "measures", "a subset of " + ", ".join(FAMILIES), families)
    if max_samples is not None:
        max_samples = check_int(max_samples, "max_samples", "measures", minimum=1)
    sharpness_samples = check_int(sharpness_samples, "sharpness_samples", "measures", minimum=1)
    bisection_steps = check_int(bisection_steps, "bisection_steps", "measures", minimum=1)
    ctx = build_context(problem, max_samples=max_samples, seed=seed)
    compute = {
        "norm": lambda: norm_measures(ctx),
        "margin": lambda: margin_measures(ctx),
        "sharpness": lambda: sharpness_measures(ctx, samples=sharpness_samples, steps=bisection_steps),
        "gradient": lambda: gradient_measures(ctx),
        "spectral": lambda: _spectral_rows(problem),
    }
    selected = [family for family in FAMILIES if family in families]
    if progress:
        from tqdm.auto import tqdm

        selected = tqdm(selected, desc="generalization measures")
    rows: list[MeasureValue] = []
    family_seconds: dict[str, float] = {}
    for family in selected:
        start = time.perf_counter()
        computed = compute[family]()
        family_seconds[family] = time.perf_counter() - start
        # rows without a finer cost (all but the sharpness searches) share their family's time
        rows += [
            row if math.isfinite(row.seconds) else dataclasses.replace(row, seconds=family_seconds[family])
            for row in computed
        ]
    report = current_guard_report(problem.model)
    unsupported = list(ctx.structure.unsupported) + [
        f"{entry} (non-ReLU activation: path norm undefined)" for entry in ctx.structure.non_homogeneous
    ]
    return MeasuresResult(
        measures=rows,
        normalised={row.name: _normalise(row, ctx.m) for row in rows},
        train_size=ctx.m,
        samples_used=len(ctx.x),
        forward_passes=ctx.forward_passes,
        unsupported_layers=unsupported,
        family_seconds=family_seconds,
        note=getattr(report, "note", "") if report is not None else "",
    )
