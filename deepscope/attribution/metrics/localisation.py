"""Localisation: do the attributions fall where the ground-truth signal is?

Against a binary mask ``m`` shaped like the attributions (1 = where the label signal lives):

* AUROC: the probability that a random signal feature outranks a random background feature,
  computed from tie-averaged ranks (Mann-Whitney U): AUC = (R₊ − n₊(n₊+1)/2) / (n₊ n₋), with R₊ the
  rank sum of the signal features (Hanley & McNeil 1982); 0.5 = chance.
* precision@k: the fraction of the k top-ranked features that are signal features.
* relevance rank accuracy (Arras et al. 2022): precision@k with k = n₊, the size of the mask.
* relevance mass accuracy (Arras et al. 2022): Σ_{i∈mask} a⁺_i / Σ_i a⁺_i over positive scores a⁺.

Scores are taken in absolute value by default (``absolute=True``): a method that marks a signal
feature with a large negative score has still localised it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from deepscope._validation import check_int
from deepscope.attribution.metrics._common import average_ranks, mean_and_standard_error
from deepscope.errors import DataError, invalid_parameter
from deepscope.results import Result

__all__ = [
    "Localisation",
    "localisation",
    "attribution_auroc",
    "precision_at_k",
    "relevance_rank_accuracy",
    "relevance_mass_accuracy",
]


def _flatten(attributions: Any, mask: Any, owner: str, absolute: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(getattr(attributions, "values", None), torch.Tensor):
        attributions = attributions.values
    if not isinstance(attributions, torch.Tensor) or attributions.dim() < 2:
        raise invalid_parameter("attributions", owner, "a tensor of shape (batch, *features)", attributions)
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(attributions.shape):
        raise invalid_parameter("mask", owner, f"a tensor of shape {tuple(attributions.shape)}", mask)
    if not bool(torch.isfinite(attributions).all()):
        raise DataError(f"The 'attributions' of {owner} contain NaN or infinite values.")
    values = attributions.detach().reshape(attributions.shape[0], -1).to(torch.float64)
    truth = mask.detach().reshape(mask.shape[0], -1).to(values.device)
    if not bool(((truth == 0) | (truth == 1)).all()):
        raise invalid_parameter("mask", owner, "a binary tensor (0 = background, 1 = signal)", mask)
    return (values.abs() if absolute else values), truth.bool()


def attribution_auroc(attributions: Any, mask: Any, *, absolute: bool = True) -> torch.Tensor:
    """Per-example AUROC of the attribution scores for separating mask features from the rest.

    Args:
        attributions: ``(batch, *features)`` (or an Attribution). mask: binary, same shape.
        absolute: rank by |a| (default) or by the signed scores.

    Returns:
        ``(batch,)`` float64; NaN where the mask is all 0 or all 1 (AUROC undefined).

    Example:
        >>> attribution_auroc(torch.tensor([[0.9, 0.1, 0.5]]), torch.tensor([[1, 0, 0]]))
        tensor([1.], dtype=torch.float64)
    """
    values, truth = _flatten(attributions, mask, "attribution_auroc", absolute)
    ranks = average_ranks(values)
    positives = truth.sum(dim=1).to(torch.float64)
    negatives = truth.shape[1] - positives
    rank_sum = (ranks * truth).sum(dim=1)
    auroc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return torch.where((positives > 0) & (negatives > 0), auroc, torch.full_like(auroc, float("nan")))


def _top_k_hits(values: torch.Tensor, truth: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Number of signal features among each row's k top-ranked features (ties broken by position)."""
    order = torch.argsort(values, dim=1, descending=True, stable=True)
    sorted_truth = truth.gather(1, order).to(torch.float64)
    cumulative = torch.cat([torch.zeros_like(sorted_truth[:, :1]), sorted_truth.cumsum(dim=1)], dim=1)
    return cumulative.gather(1, k.unsqueeze(1)).squeeze(1)


def precision_at_k(attributions: Any, mask: Any, k: int, *, absolute: bool = True) -> torch.Tensor:
    """Fraction of the ``k`` top-ranked features that lie in the mask, per example ``(batch,)``.

    Example:
        >>> precision_at_k(torch.tensor([[0.9, 0.1, 0.5]]), torch.tensor([[1, 0, 0]]), k=2)
        tensor([0.5000], dtype=torch.float64)
    """
    values, truth = _flatten(attributions, mask, "precision_at_k", absolute)
    k = check_int(k, "k", "precision_at_k", minimum=1, maximum=values.shape[1])
    return _top_k_hits(values, truth, torch.full((values.shape[0],), k, device=values.device)) / k


def relevance_rank_accuracy(attributions: Any, mask: Any, *, absolute: bool = True) -> torch.Tensor:
    """Arras et al. (2022): |top-K ∩ mask| / K with K = |mask| per example; NaN for an empty mask.

    Example:
        >>> relevance_rank_accuracy(torch.tensor([[0.9, 0.1, 0.5]]), torch.tensor([[1, 0, 1]]))
        tensor([1.], dtype=torch.float64)
    """
    values, truth = _flatten(attributions, mask, "relevance_rank_accuracy", absolute)
    sizes = truth.sum(dim=1)
    hits = _top_k_hits(values, truth, sizes)
    return torch.where(sizes > 0, hits / sizes.clamp_min(1), torch.full_like(hits, float("nan")))


def relevance_mass_accuracy(attributions: Any, mask: Any, *, absolute: bool = True) -> torch.Tensor:
    """Arras et al. (2022): share of the positive attribution mass inside the mask; NaN if no mass.

    Example:
        >>> relevance_mass_accuracy(torch.tensor([[3.0, 1.0, -2.0]]), torch.tensor([[1, 0, 0]]), absolute=False)
        tensor([0.7500], dtype=torch.float64)
    """
    values, truth = _flatten(attributions, mask, "relevance_mass_accuracy", absolute)
    positive = values.clamp_min(0)
    total = positive.sum(dim=1)
    inside = (positive * truth).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan")))


@dataclasses.dataclass(frozen=True)
class Localisation(Result):
    """Localisation scores per example and their means (NaN entries are left out of the means).

    Attributes:
        auroc, precision_at_k, relevance_rank, relevance_mass: ``(batch,)`` each.
        k: the k of precision@k (None: k = |mask| per example, i.e. relevance rank accuracy).
        means: ``{name: (mean, standard_error, examples)}``.
    """

    auroc: torch.Tensor
    precision_at_k: torch.Tensor
    relevance_rank: torch.Tensor
    relevance_mass: torch.Tensor
    k: int | None
    means: dict[str, tuple[float, float, int]]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"metric": name, "mean": mean, "standard_error": error, "examples": count}
            for name, (mean, error, count) in self.means.items()
        ]

    def summary(self) -> str:
        """The means as one sentence, e.g. ``"Localisation: auroc 0.9 ± 0.05 (8 examples), ..."``."""
        parts = [
            f"{name} {mean:.3g} ± {error:.2g} ({count} examples)" for name, (mean, error, count) in self.means.items()
        ]
        return f"{type(self).__name__}: " + ", ".join(parts) + "."


def localisation(attributions: Any, mask: Any, *, k: int | None = None, absolute: bool = True) -> Localisation:
    """All localisation scores of ``attributions`` against a ground-truth ``mask``.

    Args:
        attributions: ``(batch, *features)`` scores (or an Attribution); mask: binary, same shape.
        k: for precision@k; None uses k = |mask| of each example (then it equals relevance rank accuracy).
        absolute: rank and weigh |a| (default) or the signed scores.

    Returns:
        :class:`Localisation`.

    Example:
        >>> result = localisation(torch.tensor([[0.9, 0.1, 0.5]]), torch.tensor([[1, 0, 0]]))
        >>> result.means["auroc"][0]
        1.0
    """
    auroc = attribution_auroc(attributions, mask, absolute=absolute)
    rank = relevance_rank_accuracy(attributions, mask, absolute=absolute)
    precision = rank if k is None else precision_at_k(attributions, mask, k, absolute=absolute)
    mass = relevance_mass_accuracy(attributions, mask, absolute=absolute)
    means = {
        "auroc": mean_and_standard_error(auroc),
        "precision_at_k": mean_and_standard_error(precision),
        "relevance_rank_accuracy": mean_and_standard_error(rank),
        "relevance_mass_accuracy": mean_and_standard_error(mass),
    }
    return Localisation(auroc.cpu(), precision.cpu(), rank.cpu(), mass.cpu(), k, means)
