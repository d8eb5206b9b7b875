"""Complexity of an attribution map: how concentrated is it?

* Sparseness (Chalasani et al. 2020): the Gini index of |a| sorted ascending,
  G = Σ_k (2k − d − 1)|a|_(k) / (d Σ_k |a|_(k)), 0 for a uniform map, 1 − 1/d for a one-hot map.
* Entropy (Bhatt et al. 2020): H = −Σ_i p_i log p_i with p = |a| / Σ|a|; 0 for a one-hot map,
  log d for a uniform map (nats).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from deepscope.attribution.metrics._common import mean_and_standard_error
from deepscope.errors import DataError, invalid_parameter
from deepscope.results import Result

__all__ = ["Complexity", "sparseness", "attribution_entropy", "complexity"]


def _magnitudes(attributions: Any, owner: str) -> torch.Tensor:
    if isinstance(getattr(attributions, "values", None), torch.Tensor):
        attributions = attributions.values
    if not isinstance(attributions, torch.Tensor) or attributions.dim() < 2:
        raise invalid_parameter("attributions", owner, "a tensor of shape (batch, *features)", attributions)
    if not bool(torch.isfinite(attributions).all()):
        raise DataError(f"The 'attributions' of {owner} contain NaN or infinite values.")
    return attributions.detach().reshape(attributions.shape[0], -1).to(torch.float64).abs()


def sparseness(attributions: Any) -> torch.Tensor:
    """Gini index of |a| per example ``(batch,)`` (Chalasani et al. 2020); NaN for an all-zero map.

    Example:
        >>> sparseness(torch.tensor([[0.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]]))
        tensor([0.7500, 0.0000], dtype=torch.float64)
    """
    magnitudes, _ = torch.sort(_magnitudes(attributions, "sparseness"), dim=1)
    d = magnitudes.shape[1]
    weights = 2 * torch.arange(1, d + 1, dtype=torch.float64, device=magnitudes.device) - d - 1
    total = magnitudes.sum(dim=1)
    gini = (magnitudes * weights).sum(dim=1) / (d * total.clamp_min(1e-300))
    return torch.where(total > 0, gini, torch.full_like(gini, float("nan")))


def attribution_entropy(attributions: Any) -> torch.Tensor:
    """Shannon entropy (nats) of p = |a| / Σ|a| per example ``(batch,)``; NaN for an all-zero map.

    Example:
        >>> attribution_entropy(torch.tensor([[1.0, 1.0], [0.0, 3.0]]))
        tensor([0.6931, 0.0000], dtype=torch.float64)
    """
    magnitudes = _magnitudes(attributions, "attribution_entropy")
    total = magnitudes.sum(dim=1, keepdim=True)
    p = magnitudes / total.clamp_min(1e-300)
    entropy = torch.where(p > 0, -p * p.log(), torch.zeros_like(p)).sum(dim=1)
    return torch.where(total.squeeze(1) > 0, entropy, torch.full_like(entropy, float("nan")))


@dataclasses.dataclass(frozen=True)
class Complexity(Result):
    """Sparseness and entropy per example, with means, standard errors and example counts."""

    sparseness: torch.Tensor
    entropy: torch.Tensor
    means: dict[str, tuple[float, float, int]]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"metric": name, "mean": mean, "standard_error": error, "examples": count}
            for name, (mean, error, count) in self.means.items()
        ]

    def summary(self) -> str:
        """The means as one sentence, e.g. ``"Complexity: auroc 0.9 ± 0.05 (8 examples), ..."``."""
        parts = [
            f"{name} {mean:.3g} ± {error:.2g} ({count} examples)" for name, (mean, error, count) in self.means.items()
        ]
        return f"{type(self).__name__}: " + ", ".join(parts) + "."


def complexity(attributions: Any) -> Complexity:
    """Sparseness (Gini, higher = more concentrated) and entropy (lower = more concentrated).

    Example:
        >>> round(complexity(torch.tensor([[0.0, 0.0, 0.0, 2.0]])).means["sparseness"][0], 2)
        0.75
    """
    gini = sparseness(attributions)
    entropy = attribution_entropy(attributions)
    means = {"sparseness": mean_and_standard_error(gini), "entropy": mean_and_standard_error(entropy)}
    return Complexity(gini.cpu(), entropy.cpu(), means)
