"""The one canonicaliser of layer kinds: which modules are affine, which are BatchNorms, and how a
BatchNorm in eval semantics folds into the Linear/Conv layer before it.

A BatchNorm in eval semantics is the per-channel affine map ``y = γ (x − μ) / √(σ² + ε) + β``.
Following a Linear/Conv ``x = W a + b`` it folds into that layer:

    W' = W · diag(s),   b' = (b − μ) · s + β,   s = γ / √(σ² + ε)      (per output channel)

(γ = 1 and β = 0 for a BatchNorm without affine parameters; b = 0 for a layer without bias). The
generalization measures (``generalization/_measures/_folding.py``, which fold a parameter dict)
and LRP's graph (``attribution/_lrp_graph.py``, which folds module weights) both call
:func:`fold_batchnorm`, so the arithmetic, and its rounding, is the same everywhere.

Example:
    >>> import torch
    >>> weight, bias = torch.ones(2, 3), torch.zeros(2)
    >>> folded, shift = fold_batchnorm(weight, bias, mean=torch.ones(2), var=torch.full((2,), 3.0), eps=1.0)
    >>> folded[0].tolist(), shift.tolist()
    ([0.5, 0.5, 0.5], [-0.5, -0.5])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AFFINE_LAYERS", "BATCHNORMS", "fold_batchnorm"]

# The affine layers whose weights the canonical network is made of (BatchNorm folds into them).
AFFINE_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# The normalisations that fold into the affine layer before them (in eval semantics).
BATCHNORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    mean: torch.Tensor,
    var: torch.Tensor,
    eps: float,
    gamma: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``BatchNorm(layer(a))`` as one affine layer (see the module docstring).

    Args:
        weight: the layer's weight, ``(out, in, *kernel)``.
        bias: its bias ``(out,)``, or None (then 0).
        mean, var: the BatchNorm's running statistics ``(out,)``.
        eps: the BatchNorm's ε.
        gamma, beta: its affine parameters ``(out,)``, or None (then 1 and 0).

    Returns:
        ``(W', b')``: the folded weight (same shape as ``weight``) and bias ``(out,)``.
    """
    gamma = torch.ones_like(var) if gamma is None else gamma
    beta = torch.zeros_like(var) if beta is None else beta
    scale = gamma / torch.sqrt(var + eps)
    folded = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    shift = ((bias if bias is not None else torch.zeros_like(mean)) - mean) * scale + beta
    return folded, shift
