"""A cheap set of attribution metrics for the report: deletion/insertion AUC, sparseness, localisation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope.attribution.metrics._common import (
    DEFAULT_MAX_BATCH,
    AttributionSource,
    prepare_single_target,
    resolve_attributions,
)
from deepscope.attribution.metrics.complexity import complexity
from deepscope.attribution.metrics.faithfulness import deletion_curve, insertion_curve
from deepscope.attribution.metrics.localisation import localisation
from deepscope.registry import analysis

__all__ = ["summary_metrics"]


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"step_fraction": 0.25})
def summary_metrics(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: Any = None,
    attributions: AttributionSource = None,
    mask: torch.Tensor | None = None,
    *,
    step_fraction: float = 0.1,
    baseline: Any = 0.0,
    output_fn: Any = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> dict[str, float | tuple[float, float]]:
    """Deletion and insertion AUC (probability), sparseness and, with a mask, localisation.

    Every entry is ``(mean, standard_error)`` over the examples, plus ``"examples"`` (an int).

    Args:
        model: classifier. inputs: ``(batch, *features)``. targets: None (predicted class), an int
            or ``(batch,)`` ints. attributions: tensor shaped like inputs, an Attribution, a method
            name or callable (None = saliency). mask: optional binary ground truth shaped like inputs.
        step_fraction, baseline: for the deletion/insertion curves.

    Returns:
        ``{"deletion_auc": (m, se), "insertion_auc": (m, se), "sparseness": (m, se),
        ["localisation_auroc": (m, se), "precision_at_k": (m, se)], "examples": n}``.

    Example:
        >>> net = torch.nn.Linear(6, 2)
        >>> sorted(summary_metrics(net, torch.randn(4, 6), 0))
        ['deletion_auc', 'examples', 'insertion_auc', 'sparseness']
    """
    owner = "summary_metrics"
    prepared = prepare_single_target(model, inputs, targets, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, resolved = prepared.inputs, prepared.targets[0]
    values = resolve_attributions(
        model, x, resolved, attributions, owner, output_fn=output_fn, max_batch=prepared.max_batch
    )
    options = {"attributions": values, "baseline": baseline, "step_fraction": step_fraction, "output_fn": output_fn}
    deletion = deletion_curve(model, x, resolved, max_batch=prepared.max_batch, **options)
    insertion = insertion_curve(model, x, resolved, max_batch=prepared.max_batch, **options)
    summary: dict[str, Any] = {
        "deletion_auc": (deletion.mean_auc, deletion.standard_error),
        "insertion_auc": (insertion.mean_auc, insertion.standard_error),
        "sparseness": complexity(values).means["sparseness"][:2],
        "examples": int(x.shape[0]),
    }
    if mask is not None:
        local = localisation(values, mask.to(values.device) if isinstance(mask, torch.Tensor) else mask)
        summary["localisation_auroc"] = local.means["auroc"][:2]
        summary["precision_at_k"] = local.means["precision_at_k"][:2]
    return summary
