"""Centered kernel alignment (CKA; Kornblith et al. 2019) between layers and between two models.

For activations X (n × p) and Y (n × q) of the same n inputs, with H = I − 11ᵀ/n,

    HSIC(K, L) = tr(K H L H) / (n − 1)²,   CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).

Linear kernels K = XXᵀ give CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on centred X, Y, computed in the
feature space (no n × n matrices). RBF kernels use K_ij = exp(−‖x_i − x_j‖² / (2σ²)) with σ =
``bandwidth`` × the median distance between distinct inputs (pairs i < j). CKA is invariant to orthogonal transforms and
isotropic scaling of either representation (not to arbitrary invertible maps) and is 1 for
identical representations.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_float
from deepscope.attribution.representation._activations import check_inputs, check_layers, collect_activations
from deepscope.errors import invalid_parameter
from deepscope.guard import model_guard
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["CKAMatrix", "cka", "layer_cka", "model_cka"]

_KERNELS = ("linear", "rbf")


def _centred(matrix: torch.Tensor) -> torch.Tensor:
    matrix = matrix.reshape(matrix.shape[0], -1).to(torch.float64)
    return matrix - matrix.mean(dim=0, keepdim=True)


def _rbf_gram(matrix: torch.Tensor, bandwidth: float) -> torch.Tensor:
    distances = torch.cdist(matrix, matrix, compute_mode="donot_use_mm_for_euclid_dist")
    pairs = distances[torch.triu_indices(len(matrix), len(matrix), offset=1, device=matrix.device).unbind()]
    median = float(pairs.median()) if pairs.numel() and float(pairs.median()) > 0 else 1.0
    sigma = bandwidth * median
    return torch.exp(-distances.pow(2) / (2 * sigma * sigma))


def _hsic(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    n = first.shape[0]
    centering = torch.eye(n, dtype=first.dtype, device=first.device) - 1.0 / n
    return torch.trace(first @ centering @ second @ centering) / (n - 1) ** 2


def cka(first: torch.Tensor, second: torch.Tensor, *, kernel: str = "linear", bandwidth: float = 1.0) -> float:
    """CKA between two representations of the same inputs (Kornblith et al. 2019).

    Args:
        first: ``(n, *features)`` activations; second: ``(n, *features')`` of the same n inputs.
        kernel: "linear" or "rbf". bandwidth: σ as a multiple of the median distance (rbf only).

    Returns:
        A float in [0, 1] (NaN if either representation is constant over the inputs).

    Example:
        >>> x = torch.randn(50, 4)
        >>> round(cka(x, 3 * x @ torch.linalg.qr(torch.randn(4, 4))[0]), 6)
        1.0
    """
    if kernel not in _KERNELS:
        raise invalid_parameter("kernel", "cka", "one of 'linear', 'rbf'", kernel)
    bandwidth = check_float(bandwidth, "bandwidth", "cka", minimum=0.0, strict_minimum=True)
    for name, value in (("first", first), ("second", second)):
        if not isinstance(value, torch.Tensor) or value.dim() < 2 or value.shape[0] < 2:
            raise invalid_parameter(name, "cka", "a tensor of shape (n >= 2, *features)", value)
    if first.shape[0] != second.shape[0]:
        raise invalid_parameter("second", "cka", f"a tensor with {first.shape[0]} rows (same inputs)", second)
    x, y = _centred(first), _centred(second)
    if kernel == "linear":
        numerator = (y.t() @ x).pow(2).sum()
        denominator = (x.t() @ x).norm() * (y.t() @ y).norm()
    else:
        k, gram = _rbf_gram(x, bandwidth), _rbf_gram(y, bandwidth)
        numerator = _hsic(k, gram)
        denominator = (_hsic(k, k) * _hsic(gram, gram)).sqrt()
    return float(numerator / denominator) if float(denominator) > 0 else math.nan


@dataclasses.dataclass(frozen=True)
class CKAMatrix(Result):
    """CKA between every pair of (row layer, column layer).

    Attributes:
        row_layers, column_layers: module names. matrix: ``(rows, columns)`` CKA values.
        kernel: "linear" or "rbf". n_inputs: inputs the representations were computed on.
    """

    row_layers: list[str]
    column_layers: list[str]
    matrix: torch.Tensor
    kernel: str
    n_inputs: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"layer": row, **{column: float(self.matrix[i, j]) for j, column in enumerate(self.column_layers)}}
            for i, row in enumerate(self.row_layers)
        ]

    def plot(self, ax=None):  # -> matplotlib.figure.Figure
        """Heat map of the CKA matrix."""
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.5, 4.0) if ax is None else (ax.figure, ax)
        shown = ax.imshow(self.matrix.numpy(), vmin=0, vmax=1, cmap="magma", origin="lower")
        ax.set_xticks(range(len(self.column_layers)), self.column_layers, rotation=90)
        ax.set_yticks(range(len(self.row_layers)), self.row_layers)
        ax.set_title(f"{self.kernel} CKA")
        figure.colorbar(shown, ax=ax, shrink=0.8)
        return figure


def _matrix(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], kernel: str, bandwidth: float):
    return torch.tensor(
        [[cka(a, b, kernel=kernel, bandwidth=bandwidth) for b in second.values()] for a in first.values()]
    )


@analysis(takes="model_inputs", family="attribution", fixture="mlp")
def layer_cka(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    layers: list[str] | None = None,
    kernel: str = "linear",
    bandwidth: float = 1.0,
    max_batch: int = 1024,
) -> CKAMatrix:
    """CKA between every pair of layers of one model on the same inputs (Kornblith et al. 2019).

    Args:
        model: any module. inputs: ``(n, *features)``. layers: module names (default: every leaf
            module except Dropout/Identity). kernel, bandwidth: as in :func:`cka`.

    Returns:
        :class:`CKAMatrix` (symmetric, ones on the diagonal).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
        >>> layer_cka(net, torch.randn(20, 3)).matrix.shape
        torch.Size([3, 3])
    """
    names = check_layers(model, layers, "layer_cka")
    activations = collect_activations(model, check_inputs(model, inputs, "layer_cka"), names, max_batch=max_batch)
    return CKAMatrix(names, names, _matrix(activations, activations, kernel, bandwidth), kernel, int(inputs.shape[0]))


_EXAMPLE_OTHER = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))


@analysis(takes="model_inputs", family="attribution", fixture="mlp", example_kwargs={"other": _EXAMPLE_OTHER})
def model_cka(
    model: nn.Module,
    inputs: torch.Tensor,
    other: nn.Module,
    *,
    layers: list[str] | None = None,
    other_layers: list[str] | None = None,
    kernel: str = "linear",
    bandwidth: float = 1.0,
    max_batch: int = 1024,
) -> CKAMatrix:
    """CKA between the layers of two models on the same inputs (e.g. two seeds, before/after fine-tuning).

    Args:
        model, other: the two networks (both left untouched). inputs: ``(n, *features)`` accepted by both.
        layers, other_layers: module names of each (default: their leaf modules).
        kernel, bandwidth: as in :func:`cka`.

    Returns:
        :class:`CKAMatrix` with ``model``'s layers as rows and ``other``'s as columns.

    Example:
        >>> a = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh())
        >>> b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
        >>> model_cka(a, torch.randn(20, 3), b).matrix.shape
        torch.Size([2, 2])
    """
    if not isinstance(other, nn.Module):
        raise invalid_parameter("other", "model_cka", "a torch.nn.Module", other)
    names = check_layers(model, layers, "model_cka")
    other_names = check_layers(other, other_layers, "model_cka", "other_layers")
    first = collect_activations(model, check_inputs(model, inputs, "model_cka"), names, max_batch=max_batch)
    with model_guard(other) as report:
        second = collect_activations(other, check_inputs(other, inputs, "model_cka"), other_names, max_batch=max_batch)
    matrix = _matrix(first, second, kernel, bandwidth)
    return CKAMatrix(names, other_names, matrix, kernel, int(inputs.shape[0]), note=report.note)
