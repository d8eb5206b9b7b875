"""``measures(problem)``: every generalization measure of Jiang et al. (2020) in one table.

Each row has the measure's value, its normalised value, its family and its reference. Following
Jiang et al., a bound-like measure μ is normalised as ``√(μ/m)`` (m = training-set size); a measure
already on a log scale is normalised as ``(μ − log m)/2`` (the log of that expression). BatchNorm is
folded into the preceding layer first; layers a measure cannot handle are listed in
``unsupported_layers`` and the affected values are NaN with a note — never silently skipped.
A tied weight (GPT-2's output layer is its token embedding) is one parameter and counted once.

Cost. Every row records the seconds and the example-forward and -backward passes of the
computation it came from. Before a data-dependent family runs, its time is predicted from one
timed forward pass over the subset (see ``_cost``); a family predicted to exceed
``max_family_seconds`` is declined — its rows NaN with a one-line note — instead of running for
hours (the sharpness searches on an 11M-parameter ResNet-18 are predicted at about an hour).
Per-example work is chunked under a memory budget, so the memory does not grow with the number
of examples.

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
from deepscope.generalization._measures._cost import predicted_passes
from deepscope.generalization._measures.fisher_rao import example_gradient_seconds, gradient_measures
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
        forward_passes: example-forward passes spent.
        backward_passes: example-derivative passes spent (reverse-mode backward passes and the
            forward-mode derivative of the Fisher-Rao norm).
        unsupported_layers: modules the norm measures could not handle, and why.
        family_seconds: wall time of each family (seconds); each row's ``seconds`` is the time of
            the computation it came from (one sharpness search, or its whole family otherwise),
            so rows from one computation share it and the family times are the sum to read.
            Each row also has the ``forward_passes``/``backward_passes`` of that computation.
        declined: family -> one-line reason, for the families not run because of their predicted cost.
        note: the model guard's note (e.g. which train-mode modules ran in eval semantics), tied
            weights, and whether fused attention ran on its math kernel.
    """

    measures: list[MeasureValue]
    normalised: dict[str, float]
    train_size: int
    samples_used: int
    forward_passes: int
    unsupported_layers: list[str]
    family_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    note: str = ""
    backward_passes: int = 0
    declined: dict[str, str] = dataclasses.field(default_factory=dict)

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
                "forward_passes": m.forward_passes,
                "backward_passes": m.backward_passes,
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


# the rows of the families whose cost is predicted (a declined family still lists its rows, NaN)
_PREDICTED_ROWS = {
    "sharpness": (
        ("pac_bayes_sigma", "pac_bayes_orig", "pac_bayes_init", "pac_bayes_flatness"),
        ("pac_bayes_mag_sigma", "pac_bayes_mag_orig", "pac_bayes_mag_init", "pac_bayes_mag_flatness"),
        ("worst_case_sharpness_alpha", "sharpness_orig", "sharpness_init", "sharpness_flatness"),
    ),
    "gradient": (("fisher_rao_norm", "gradient_noise"),),
}
_ASCENT_STEPS = 5
_NOISE_EXAMPLES = 256
_MIN_NOISE_EXAMPLES = 16


def _declined_rows(family: str, reason: str) -> list[MeasureValue]:
    names = [name for group in _PREDICTED_ROWS[family] for name in group]
    return [
        MeasureValue(
            name,
            math.nan,
            family,
            "Jiang et al. 2020",
            "declined",
            note=reason,
            seconds=0.0,
            forward_passes=0,
            backward_passes=0,
        )
        for name in names
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
    bisection_steps: int = 5,
    seed: int = 0,
    progress: bool = False,
    max_family_seconds: float | None = 300.0,
    chunk_size: int | None = None,
) -> MeasuresResult:
    """Compute the generalization measures of a trained classifier.

    Args:
        problem: a :class:`deepscope.Problem` with a classification loss; give ``init_state`` for
            the distance-from-initialisation measures. Inputs may be float tensors, integer
            token ids or dicts of tensors, and ``problem.forward`` selects the logits.
        families: which families to compute, among "norm", "margin", "sharpness", "gradient",
            "spectral" (sharpness is the expensive one).
        max_samples: training examples used by the data-dependent measures (None: all).
        sharpness_samples: Monte-Carlo noise draws per bisection step for σ and σ'.
        bisection_steps: log-space bisection steps of the σ, σ' and α searches after their bracket
            is found: the crossing radius is pinned to a factor ``2^(2^−steps)`` (5: 2.2%, well
            under the Monte-Carlo error of the drop; each note gives the final bracket).
        seed: seed of the noise draws and power iterations.
        progress: show a tqdm bar over the families (sharpness dominates the cost).
        max_family_seconds: decline a "sharpness" or "gradient" family whose predicted time
            (passes × one timed forward pass over the subset) exceeds this; the gradient noise
            first takes fewer examples (down to 16; its note gives the number and the standard
            error) to fit. None: no limit.
        chunk_size: examples per chunk of the Fisher-Rao forward-mode derivative and of the
            worst-case ascent's backward passes (None: sized so that a chunk holds about 256 MB
            of activations); per-example gradients are taken one example at a time.

    Returns:
        :class:`MeasuresResult`, one row per measure, each with its cost.
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
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", "measures", minimum=1)
    if max_family_seconds is not None and (
        not isinstance(max_family_seconds, (int, float)) or not max_family_seconds > 0
    ):
        raise invalid_parameter(
            "max_family_seconds", "measures", "a positive number of seconds or None", max_family_seconds
        )
    ctx = build_context(problem, max_samples=max_samples, seed=seed)
    compute = {
        "norm": lambda: norm_measures(ctx),
        "margin": lambda: margin_measures(ctx),
        "sharpness": lambda: sharpness_measures(
            ctx, samples=sharpness_samples, steps=bisection_steps, chunk=chunk_size
        ),
        "gradient": lambda: gradient_measures(
            ctx, chunk=chunk_size, noise_examples=ctx.cache.get("noise_examples", 256)
        ),
        "spectral": lambda: _spectral_rows(problem),
    }
    selected = [family for family in FAMILIES if family in families]
    if progress:
        from tqdm.auto import tqdm

        selected = tqdm(selected, desc="generalization measures")
    rows: list[MeasureValue] = []
    family_seconds: dict[str, float] = {}
    declined: dict[str, str] = {}
    for family in selected:
        start = time.perf_counter()
        passes = (ctx.forward_passes, ctx.backward_passes)
        reason = _decline(ctx, family, max_family_seconds, sharpness_samples, bisection_steps)
        if reason:
            declined[family] = reason
            rows += _declined_rows(family, reason)
            family_seconds[family] = time.perf_counter() - start
            continue
        computed = compute[family]()
        family_seconds[family] = time.perf_counter() - start
        forward, backward = ctx.forward_passes - passes[0], ctx.backward_passes - passes[1]
        # rows without a finer cost (all but the sharpness searches) share their family's time and passes
        rows += [
            dataclasses.replace(
                row,
                seconds=row.seconds if math.isfinite(row.seconds) else family_seconds[family],
                forward_passes=forward if row.forward_passes is None else row.forward_passes,
                backward_passes=backward if row.backward_passes is None else row.backward_passes,
            )
            for row in computed
        ]
    report = current_guard_report(problem.model)
    unsupported = list(ctx.structure.unsupported) + [
        f"{entry} (non-ReLU activation: path norm undefined)" for entry in ctx.structure.non_homogeneous
    ]
    notes = [getattr(report, "note", "") if report is not None else ""]
    if ctx.structure.tied:
        notes.append("tied weights counted once: " + "; ".join(ctx.structure.tied))
    if ctx.cache.get("math_attention"):
        notes.append("fused attention ran on its math kernel for the forward-mode derivative")
    return MeasuresResult(
        measures=rows,
        normalised={row.name: _normalise(row, ctx.m) for row in rows},
        train_size=ctx.m,
        samples_used=ctx.n,
        forward_passes=ctx.forward_passes,
        unsupported_layers=unsupported,
        family_seconds=family_seconds,
        note="; ".join(note for note in notes if note),
        backward_passes=ctx.backward_passes,
        declined=declined,
    )


def _decline(ctx, family: str, limit: float | None, samples: int, steps: int) -> str:
    """The one-line reason to decline ``family`` (its predicted time exceeds ``limit``), or "".

    The gradient family first shrinks its gradient-noise sample to fit (at least 16 examples; the
    row's note gives the sample and its standard error).
    """
    if limit is None or family not in _PREDICTED_ROWS:
        return ""
    passes = predicted_passes(family, samples=samples, steps=steps, ascent_steps=_ASCENT_STEPS)
    seconds = passes * ctx.clean_seconds()
    detail = f"{passes:.0f} passes over {ctx.n} examples at {ctx.clean_seconds():.2g} s each"
    if family == "gradient":
        one = example_gradient_seconds(ctx)
        examples = min(ctx.n, _NOISE_EXAMPLES, int(max(limit - seconds, 0.0) // max(one, 1e-12)))
        if examples >= _MIN_NOISE_EXAMPLES:
            ctx.cache["noise_examples"] = examples
            return ""
        examples = min(ctx.n, _MIN_NOISE_EXAMPLES)
        seconds += examples * one
        detail += f", {examples} per-example gradients at {one:.2g} s each"
    if seconds <= limit:
        return ""
    return (
        f"declined: predicted up to {seconds:.0f} s ({detail}) > max_family_seconds={limit:g}; "
        "pass a larger limit, None, or fewer max_samples"
    )
