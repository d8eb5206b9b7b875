"""The genomics blocks of the report's "Attribution" section, computed (the report renders them).

For a few test sequences of one-hot DNA ``(batch, 4, L)`` the section shows, each as an isolated
block (see :func:`deepscope.attribution.report_section.build_attribution_section`):

1. **ISM logos**: in-silico mutagenesis (:func:`~deepscope.attribution.ism`, 3L+1 forward passes
   per sequence, the receptive-field fast path when the model allows it) drawn as attribution
   logos (:func:`~deepscope.attribution.logos.attribution_logo`): the observed letter's height is
   its position importance, ``−mean_a (F(x with l → a) − F(x))`` over the three substitutions
   (positive: mutating the base lowers the score).
2. **DeepLIFT-SHAP logos**: :func:`deepscope.attribution.deep_lift_shap` against dinucleotide-
   shuffled references (5 in the quick budget, 20 in the full one), on the observed letters.
3. **Seqlets**: TF-MoDISco's seqlet calling (:func:`~deepscope.attribution.seqlets.call_seqlets`)
   on the per-position attribution (DeepLIFT-SHAP when it ran, else ISM), with the core window set
   to the planted motif's length when the dataset marks one.
4. **Motif recovery**: when the dataset's ground-truth mask marks one contiguous site per sequence
   (``planted_motifs``), the seqlets' precision and recall against those sites
   (:func:`~deepscope.attribution.seqlets.motif_recovery`).

ISM and DeepLIFT-SHAP take ``max_batch``, the rows per model call, which the report section derives
from the memory budget as for every other attribution block
(:func:`deepscope.attribution._report_cost.max_batch`): the values do not depend on it.

Every block explains the predicted class of each sequence, as the rest of the section does. This
module computes; it returns :class:`GenomicsBlock` values (text, a matplotlib figure, table rows,
results) that the report section turns into blocks, and it never imports the report layer.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from deepscope._inputs import batch_length, slice_rows
from deepscope.attribution._prepare import DEFAULT_MAX_BATCH
from deepscope.attribution.deep_lift_shap import deep_lift_shap
from deepscope.attribution.ism import ism
from deepscope.attribution.logos import attribution_logo
from deepscope.attribution.seqlets import Seqlets, call_seqlets, motif_recovery

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = [
    "GENOMICS_BUDGETS",
    "GenomicsBlock",
    "sequences",
    "sites",
    "ism_block",
    "shap_block",
    "seqlet_block",
    "recovery_block",
    "chance_precision",
]

GENOMICS_BUDGETS: dict[str, dict[str, int]] = {
    "quick": {"sequences": 16, "logos": 2, "n_shuffles": 5},
    "full": {"sequences": 64, "logos": 4, "n_shuffles": 20},
}
"""Per budget: sequences explained (before fitting the time budget), logos drawn, DeepLIFT-SHAP references."""

DEEPLIFT_PASS_FACTOR = 2.0
"""Cost of one DeepLIFT reference row (interpreted graph, forward + backward) in plain example passes."""

_NAMES = {"deep_lift_shap": "DeepLIFT-SHAP", "ism": "ISM"}
_LOGO_WINDOW = 100  # longer sequences show the 100 positions around the most important one


@dataclasses.dataclass(frozen=True)
class GenomicsBlock:
    """One computed block: a sentence, an optional figure (matplotlib) or table, and its results.

    ``track`` is the per-position attribution ``(n, L)`` a later block calls seqlets on, ``passes``
    the model passes it cost (example passes), ``seqlets`` the called seqlets.
    """

    text: str
    results: dict[str, Any]
    sentence: str = ""
    figure: Any = None
    caption: str = ""
    rows: list[dict[str, Any]] | None = None
    passes: float | None = None
    track: torch.Tensor | None = None
    seqlets: Seqlets | None = None


def sequences(dataset: Any, problem: Problem, count: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first ``count`` test sequences (train when there is no test split) and their ground-truth mask, if any."""
    x_test = getattr(dataset, "x_test", None) if dataset is not None else None
    if isinstance(x_test, torch.Tensor) and len(x_test) > 0:
        mask = getattr(dataset, "mask_test", None)
        return x_test[:count], (mask[:count] if isinstance(mask, torch.Tensor) else None)
    split = "test" if problem.test is not None else "train"
    inputs, _ = problem.tensors(split, max_samples=count)
    return slice_rows(inputs, 0, batch_length(inputs)), None


def sites(mask: torch.Tensor | None) -> tuple[torch.Tensor, int] | None:
    """Each sequence's site start and the common site length, when the mask marks one contiguous run per sequence."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 3 or len(mask) == 0:
        return None
    marked = mask.detach().cpu().amax(1) > 0  # (n, L)
    counts = marked.sum(1)
    if bool((counts == 0).any()) or bool((counts != counts[0]).any()):
        return None
    starts = marked.float().argmax(1)
    length = int(counts[0])
    positions = starts.unsqueeze(1) + torch.arange(length)
    if int(positions.max()) >= marked.shape[1] or not bool(marked.gather(1, positions).all()):
        return None  # not contiguous
    return starts, length


def ism_block(
    model: Any, x: torch.Tensor, output_fn: Any, logos: int, max_batch: int = DEFAULT_MAX_BATCH
) -> GenomicsBlock:
    """ISM of ``x`` (``max_batch`` mutated rows per call) and the logos of its first ``logos`` sequences
    (observed base = position importance)."""
    result = ism(model, x, None, output_fn=output_fn, max_batch=max_batch)
    importance = result.diagnostics["position_importance"]
    figure = _logos(importance.unsqueeze(1) * x, result.target, logos, "ISM")
    text = (
        f"In-silico mutagenesis of {len(x)} test sequences ({result.model_evaluations} forward passes, "
        f"{result.diagnostics.get('path', 'full passes')} path): each observed base is drawn as tall as the mean "
        "drop of the predicted class's score when it is mutated to the three other bases."
    )
    return GenomicsBlock(
        text,
        {"genomics_ism": {"sequences": len(x), "forward_passes": result.model_evaluations, "max_batch": max_batch}},
        sentence=f"ISM logos of {min(len(x), logos)} sequences",
        figure=figure,
        caption="ISM attribution logos of the first test sequences.",
        passes=float(result.model_evaluations),
        track=importance,
    )


def shap_block(
    model: Any, x: torch.Tensor, output_fn: Any, logos: int, n_shuffles: int, max_batch: int = DEFAULT_MAX_BATCH
) -> GenomicsBlock:
    """DeepLIFT-SHAP of ``x`` against ``n_shuffles`` dinucleotide shuffles (``max_batch`` reference rows per
    call); raises DeepscopeError when it cannot apply."""
    result = deep_lift_shap(model, x, None, n_shuffles=n_shuffles, output_fn=output_fn, max_batch=max_batch)
    figure = _logos(result.values * x, result.target, logos, "DeepLIFT-SHAP")
    worst = float(result.diagnostics["completeness_error"].max())
    text = (
        f"DeepLIFT-SHAP of {len(x)} test sequences against {n_shuffles} dinucleotide-shuffled references each "
        f"({result.model_evaluations} example passes; summation to delta holds to {worst:.1e} of the explained "
        "score change)."
    )
    return GenomicsBlock(
        text,
        {
            "genomics_deep_lift_shap": {
                "sequences": len(x),
                "n_shuffles": n_shuffles,
                "completeness_error": worst,
                "max_batch": max_batch,
            }
        },
        sentence="DeepLIFT-SHAP logos",
        figure=figure,
        caption="DeepLIFT-SHAP attribution logos (observed bases).",
        passes=float(result.model_evaluations),
        track=result.values.sum(1),
    )


def seqlet_block(track: torch.Tensor, method: str, mask: torch.Tensor | None) -> GenomicsBlock:
    """Seqlets called on ``track (n, L)``; the window is the planted site's length when ``mask`` marks one."""
    site = sites(mask[: len(track)]) if mask is not None else None
    length = track.shape[1]
    window = site[1] if site is not None else min(21, max(1, length // 5))
    flank = min(window // 2, (length - window) // 2)
    found = call_seqlets(track, window_size=window, flank=flank)
    rows = [{k: row[k] for k in ("example", "start", "end", "attribution")} for row in found.rows()[: 4 * len(track)]]
    text = (
        f"Seqlets (TF-MoDISco's seqlet calling, Shrikumar et al. 2018) on the {_NAMES.get(method, method)} attribution of "
        f"{len(track)} sequences, core window {window} bases + {flank} on each side: {len(found.start)} called "
        f"(window-sum thresholds {found.thresholds[0]:.3g} / {found.thresholds[1]:.3g})."
    )
    return GenomicsBlock(
        text,
        {"seqlets": {"method": method, "count": len(found.start), "window": window, "flank": flank, "rows": rows}},
        sentence=f"{len(found.start)} seqlets",
        caption="Called seqlets, strongest first within each sequence (half-open spans).",
        rows=rows or None,
        seqlets=found,
    )


def recovery_block(found: Seqlets, n: int, mask: torch.Tensor | None) -> GenomicsBlock | None:
    """Precision and recall of the seqlets of ``n`` sequences against the planted sites; None without sites."""
    site = sites(mask[:n]) if mask is not None else None
    if site is None:
        return None
    starts, motif_length = site
    recovery = motif_recovery(found, starts, motif_length)
    chance = chance_precision(
        starts, motif_length, found.window_size + 2 * found.flank, mask.shape[-1], recovery.min_overlap
    )
    text = (
        f"{recovery.summary()} Precision is the share of seqlets overlapping their sequence's planted motif site "
        f"by at least {recovery.min_overlap} bases (a seqlet placed at random would: {chance:.0%}); recall the "
        "share of sites hit."
    )
    numbers = {"precision": recovery.precision, "recall": recovery.recall, "chance_precision": chance, "sequences": n}
    return GenomicsBlock(
        text,
        {"motif_recovery": numbers},
        sentence=f"seqlets recover {recovery.recall:.0%} of the planted motifs",
    )


def chance_precision(starts: torch.Tensor, motif_length: int, span: int, length: int, min_overlap: int) -> float:
    """The precision of a seqlet of ``span`` bases placed uniformly at random: P(it shares >= min_overlap with the site).

    A seqlet ``[t, t + span)`` shares at least ``o`` bases with the site ``[a, a + m)`` iff
    ``a + o − span <= t <= a + m − o``; ``t`` is uniform on ``0 .. length − span``. Averaged over the sites.
    """
    if span > length:
        return float("nan")
    last = length - span
    low = (starts + min_overlap - span).clamp(min=0)
    high = (starts + motif_length - min_overlap).clamp(max=last)
    return float(((high - low + 1).clamp(min=0).double() / (last + 1)).mean())


def _logos(heights: torch.Tensor, target: torch.Tensor, count: int, method: str) -> Any:
    """A figure with one logo per row for the first ``count`` sequences (a window of the most important positions)."""
    from deepscope._figures import new_figure

    rows = min(count, len(heights))
    length = heights.shape[-1]
    width = min(length, _LOGO_WINDOW)
    figure, axes = new_figure(max(4.0, min(0.12 * width, 14.0)), 1.7 * rows, nrows=rows)
    axes = list(axes.reshape(-1)) if hasattr(axes, "reshape") else [axes]
    for i in range(rows):
        centre = int(heights[i].abs().sum(0).argmax())
        start = max(0, min(centre - width // 2, length - width))
        attribution_logo(
            heights,
            example=i,
            start=start,
            end=start + width,
            ax=axes[i],
            title=f"{method}, test sequence {i} (class {int(target.reshape(-1)[i])})",
        )
    return figure
