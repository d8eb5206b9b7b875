"""Genomics blocks of the report's "Attribution" section, for inputs that are one-hot DNA.

For a few test sequences ``(batch, 4, L)`` the section adds, each as an isolated block
(:func:`deepscope.report.sections.run_block`: one that fails shows its error alone, each states
its cost, one that does not apply says why in one line):

1. **ISM logos**: in-silico mutagenesis (:func:`~deepscope.attribution.ism`, 3L+1 forward passes
   per sequence, the receptive-field fast path when the model allows it) drawn as attribution
   logos (:func:`~deepscope.attribution.logos.attribution_logo`): the observed letter's height is
   its position importance, ``−mean_a (F(x with l → a) − F(x))`` over the three substitutions
   (positive: mutating the base lowers the score).
2. **DeepLIFT-SHAP logos**: :func:`~deepscope.attribution.deep_lift_shap.deep_lift_shap` against
   dinucleotide-shuffled references (5 in the quick budget, 20 in the full one), drawn on the
   observed letters. A model DeepLIFT cannot trace gets a one-line reason instead.
3. **Seqlets**: TF-MoDISco's seqlet calling (:func:`~deepscope.attribution.seqlets.call_seqlets`)
   on the per-position attribution (DeepLIFT-SHAP when it ran, else ISM), with the core window set
   to the planted motif's length when the dataset has one.
4. **Motif recovery**: when the dataset's ground-truth mask marks one contiguous site per sequence
   (``planted_motifs``), the seqlets' precision and recall against those sites
   (:func:`~deepscope.attribution.seqlets.motif_recovery`).

Every block explains the predicted class of each sequence, as the rest of the section does. The
number of sequences is fitted to the block budget from the measured pass cost
(:mod:`deepscope.report.cost`; ISM counts 3L+1 forward passes per sequence, an upper bound when
the fast path runs).
"""

from __future__ import annotations

from typing import Any

import torch

from deepscope._inputs import batch_length, slice_rows
from deepscope.attribution.deep_lift_shap import deep_lift_shap
from deepscope.attribution.ism import ism
from deepscope.attribution.logos import attribution_logo
from deepscope.attribution.seqlets import call_seqlets, motif_recovery
from deepscope.errors import DeepscopeError
from deepscope.report.cost import fit_count, pass_cost
from deepscope.report.sections import AuditContext, Figure, Part, Table, Text, run_block
from deepscope.report.svg import figure_to_svg, new_figure

__all__ = ["genomics_parts", "GENOMICS_BUDGETS"]

GENOMICS_BUDGETS: dict[str, dict[str, int]] = {
    "quick": {"sequences": 16, "logos": 2, "n_shuffles": 5},
    "full": {"sequences": 64, "logos": 4, "n_shuffles": 20},
}
"""Per budget: sequences explained (before fitting the time budget), logos drawn, DeepLIFT-SHAP references."""

_LOGO_WINDOW = 100  # longer sequences show the 100 positions around the most important one
_DEEPLIFT_PASS_FACTOR = 2.0  # a DeepLIFT pass (interpreted graph, forward + backward) against a plain one


def genomics_parts(context: AuditContext, output_fn: Any = None) -> list[Part]:
    """The four genomics blocks (ISM logos, DeepLIFT-SHAP logos, seqlets, motif recovery) as isolated parts."""
    budget = GENOMICS_BUDGETS.get(context.budget, GENOMICS_BUDGETS["quick"])
    model = context.problem.model
    found: dict[str, Any] = {}

    def sequences() -> tuple[torch.Tensor, torch.Tensor | None]:
        if "inputs" not in found:
            found["inputs"], found["mask"] = _sequences(context, budget["sequences"])
        return found["inputs"], found["mask"]

    def ism_part() -> Part:
        x, _ = sequences()
        length = x.shape[-1]
        unit = pass_cost(context)
        ratio = unit.forward_seconds / max(unit.seconds, 1e-12)
        count = fit_count(context, batch_length(x), (3 * length + 1) * ratio, minimum=1)
        x = x[:count]
        result = ism(model, x, None, output_fn=output_fn)
        heights = result.diagnostics["position_importance"].unsqueeze(1) * x  # on the observed letter
        found["ism"] = (result.diagnostics["position_importance"], result.target)
        svg = _logos_svg(heights, result.target, budget["logos"], "ISM")
        text = (
            f"In-silico mutagenesis of {count} test sequences ({result.model_evaluations} forward passes, "
            f"{result.diagnostics.get('path', 'full passes')} path): each observed base is drawn as tall as the "
            "mean drop of the predicted class's score when it is mutated to the three other bases."
        )
        return Part(
            [Text(text), Figure(svg, caption="ISM attribution logos of the first test sequences.")],
            {"genomics_ism": {"sequences": count, "forward_passes": result.model_evaluations}},
            sentence=f"ISM logos of {min(count, budget['logos'])} sequences",
            cost={"passes": result.model_evaluations * ratio},
        )

    def deep_lift_shap_part() -> Part:
        x, _ = sequences()
        k = budget["n_shuffles"]
        count = fit_count(context, batch_length(x), _DEEPLIFT_PASS_FACTOR * (k + 1), minimum=1)
        x = x[:count]
        try:
            result = deep_lift_shap(model, x, None, n_shuffles=k, output_fn=output_fn)
        except DeepscopeError as error:
            return _not_applicable("DeepLIFT-SHAP logos", str(error))
        found["deep_lift_shap"] = (result.values.sum(1), result.target)
        svg = _logos_svg(result.values * x, result.target, budget["logos"], "DeepLIFT-SHAP")
        worst = float(result.diagnostics["completeness_error"].max())
        text = (
            f"DeepLIFT-SHAP of {count} test sequences against {k} dinucleotide-shuffled references each "
            f"({result.model_evaluations} example passes; summation to delta holds to {worst:.1e} of the explained "
            "score change)."
        )
        return Part(
            [Text(text), Figure(svg, caption="DeepLIFT-SHAP attribution logos (observed bases).")],
            {"genomics_deep_lift_shap": {"sequences": count, "n_shuffles": k, "completeness_error": worst}},
            sentence="DeepLIFT-SHAP logos",
            cost={"passes": float(result.model_evaluations)},
        )

    def seqlets_part() -> Part:
        name = "deep_lift_shap" if "deep_lift_shap" in found else "ism"
        if name not in found:
            return _not_applicable("Seqlets", "neither ISM nor DeepLIFT-SHAP gave a per-position attribution")
        track, _ = found[name]
        _, mask = sequences()
        site = _sites(mask[: len(track)]) if mask is not None else None
        length = track.shape[1]
        window = site[1] if site is not None else min(21, max(1, length // 5))
        flank = min(window // 2, (length - window) // 2)
        seqlets = call_seqlets(track, window_size=window, flank=flank)
        found["seqlets"] = seqlets
        method = "DeepLIFT-SHAP" if name == "deep_lift_shap" else "ISM"
        rows = [
            {k: row[k] for k in ("example", "start", "end", "attribution")} for row in seqlets.rows()[: 4 * len(track)]
        ]
        text = (
            f"Seqlets (TF-MoDISco's seqlet calling, Shrikumar et al. 2018) on the {method} attribution of "
            f"{len(track)} sequences, core window {window} bases + {flank} on each side: {len(seqlets.start)} called "
            f"(window-sum thresholds {seqlets.thresholds[0]:.3g} / {seqlets.thresholds[1]:.3g})."
        )
        blocks: list[Any] = [Text(text)]
        if rows:
            blocks.append(
                Table(rows, caption="Called seqlets, strongest first within each sequence (half-open spans).")
            )
        return Part(
            blocks,
            {"seqlets": {"method": name, "count": len(seqlets.start), "window": window, "flank": flank, "rows": rows}},
            sentence=f"{len(seqlets.start)} seqlets",
        )

    def recovery_part() -> Part:
        _, mask = sequences()
        seqlets = found.get("seqlets")
        if seqlets is None:
            return _not_applicable("Motif recovery", "no seqlets were called")
        n = len(found["deep_lift_shap" if "deep_lift_shap" in found else "ism"][0])
        site = _sites(mask[:n]) if mask is not None else None
        if site is None:
            return _not_applicable(
                "Motif recovery", "the dataset marks no planted motif site per sequence (planted_motifs' mask)"
            )
        starts, motif_length = site
        recovery = motif_recovery(seqlets, starts, motif_length)
        text = (
            f"Planted motifs, {recovery.summary()} Precision is the share of seqlets overlapping their "
            f"sequence's planted site by at least {recovery.min_overlap} bases; recall the share of sites hit."
        )
        numbers = {"precision": recovery.precision, "recall": recovery.recall, "sequences": n}
        return Part(
            [Text(text)],
            {"motif_recovery": numbers},
            sentence=f"seqlets recover {recovery.recall:.0%} of the planted motifs",
        )

    return [
        run_block("ISM logos", ism_part),
        run_block("DeepLIFT-SHAP logos", deep_lift_shap_part),
        run_block("Seqlets", seqlets_part),
        run_block("Motif recovery", recovery_part),
    ]


def _sequences(context: AuditContext, count: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first test sequences (train when there is no test split) and their ground-truth mask, if any."""
    dataset = context.dataset
    x_test = getattr(dataset, "x_test", None) if dataset is not None else None
    if isinstance(x_test, torch.Tensor) and len(x_test) > 0:
        mask = getattr(dataset, "mask_test", None)
        return x_test[:count], (mask[:count] if isinstance(mask, torch.Tensor) else None)
    split = "test" if context.problem.test is not None else "train"
    inputs, _ = context.problem.tensors(split, max_samples=count)
    return slice_rows(inputs, 0, batch_length(inputs)), None


def _sites(mask: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    """Each sequence's site start and the common site length, when the mask marks one contiguous run per sequence."""
    if mask.dim() != 3 or len(mask) == 0:
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


def _logos_svg(heights: torch.Tensor, target: torch.Tensor, count: int, method: str) -> str:
    """One logo per row for the first ``count`` sequences; a window of the most important positions when long."""
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
    return figure_to_svg(figure)


def _not_applicable(label: str, reason: str) -> Part:
    """One line saying that ``label`` does not apply here, and why."""
    reason = reason.strip().rstrip(".")
    return Part([Text(f"{label} — not applicable: {reason}.")], cost={"not_applicable": reason})
