"""Spectral norms of layers: exact for Linear, power iteration on the operator for convolutions.

The spectral norm of a convolution is that of the linear operator ``x ↦ conv(x, W)`` on inputs of
the layer's actual shape (with its stride, padding and dilation), not that of the reshaped kernel
matrix ``W ∈ R^{out × in·k}`` — the two differ by up to a factor √(k) (Sedghi et al. 2019).
We find it by power iteration on ``AᵀA`` where ``Aᵀ`` is applied by autograd (the transposed
convolution), stopping when the eigen-residual ``‖AᵀAx − σ²x‖`` falls below ``tolerance · σ²``.

Example:
    >>> import torch
    >>> conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    >>> sigma, iterations = conv_operator_spectral_norm(conv, conv.weight.detach(), (1, 6, 6))
    >>> sigma > 0
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepscope.generalization._measures._folding import FoldedLayer

__all__ = ["conv_operator_spectral_norm", "layer_spectral_norm"]


def _apply_conv(module: nn.Module, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # _conv_forward applies the module's padding mode, stride and dilation without the bias
    return module._conv_forward(x, weight, None)


def conv_operator_spectral_norm(
    module: nn.Module,
    weight: torch.Tensor,
    input_shape: tuple[int, ...],
    *,
    iterations: int = 100,
    tolerance: float = 1e-6,
    seed: int = 0,
) -> tuple[float, int]:
    """Largest singular value of the convolution operator of ``module`` with kernel ``weight``.

    Args:
        module: the Conv1d/2d/3d module (for stride, padding, dilation, groups).
        weight: the (possibly BatchNorm-folded) kernel, ``(out, in/groups, *kernel)``.
        input_shape: one input's shape ``(in, *spatial)``.
        iterations: at most this many power iterations.
        tolerance: stop when the residual ‖AᵀAx − σ²x‖ is below ``tolerance · σ²``.
        seed: seed of the random start vector.

    Returns:
        ``(sigma, iterations_used)``; each iteration costs one convolution and one transposed one.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight = weight.detach()
    x = torch.randn((1, *input_shape), generator=generator, dtype=weight.dtype).to(weight.device)
    x = x / x.norm()
    sigma = 0.0
    used = 0
    for used in range(1, iterations + 1):
        x.requires_grad_(True)
        with torch.enable_grad():
            y = _apply_conv(module, weight, x)
            (back,) = torch.autograd.grad(y, x, grad_outputs=y)  # AᵀA x
        back = back.detach()
        squared = float(y.detach().pow(2).sum())  # Rayleigh quotient xᵀAᵀAx = ‖Ax‖² (x has norm 1)
        sigma = math.sqrt(squared)
        norm = back.norm()
        if float(norm) == 0.0:
            return 0.0, used
        residual = float((back - squared * x.detach()).norm())  # ‖AᵀAx − σ²x‖: zero at a singular vector
        x = back / norm
        if residual <= tolerance * squared:
            break
    # one last application at the converged vector (the Rayleigh estimate is a lower bound)
    with torch.no_grad():
        sigma = max(sigma, float(_apply_conv(module, weight, x).norm()))
    return sigma, used


def layer_spectral_norm(layer: FoldedLayer, *, iterations: int = 100, tolerance: float = 1e-6) -> tuple[float, int]:
    """Spectral norm of a folded Linear (exact SVD) or Conv layer (operator power iteration).

    Returns ``(sigma, power_iterations)`` (0 iterations for Linear layers).
    """
    if layer.spec.kind == "linear":
        return float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2)), 0
    return conv_operator_spectral_norm(
        layer.spec.module, layer.weight, layer.spec.input_shape, iterations=iterations, tolerance=tolerance
    )
