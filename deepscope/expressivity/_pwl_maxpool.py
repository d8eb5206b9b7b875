"""Max pooling in the piecewise-linear graph walk: cut the pieces where a window's argmax changes.

On a piece, each pooling window's inputs are affine functions ``f_1..f_m`` of the plane
coordinates; the pool is affine exactly on the convex cells where one ``f_i`` is the largest
(:func:`._geometry.partition_by_argmax`), where it selects that input. A parent piece on which one
candidate wins everywhere (:func:`._geometry.argmax_settled`) is not cut.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.errors import UnsupportedModelError
from deepscope.expressivity import _geometry as geometry
from deepscope.expressivity._pwl_values import Affine, PartitionState

__all__ = ["max_pool"]


def _coefficients(value: Affine) -> np.ndarray:
    """``(P, features, k + 1)`` NumPy view of an affine value."""
    tensor = value.tensor
    return tensor.reshape(tensor.shape[0], tensor.shape[1], -1).transpose(1, 2).detach().cpu().numpy()


def _to_affine(coefficients: np.ndarray, like: torch.Tensor, features: tuple) -> Affine:
    tensor = torch.from_numpy(np.ascontiguousarray(coefficients.transpose(0, 2, 1)))
    return Affine(tensor.to(like.device).reshape(coefficients.shape[0], coefficients.shape[2], *features))


def max_pool(value: Affine, module: nn.Module, name: str, state: PartitionState):
    """Cut the pieces into the cells where each window's argmax is fixed; the pool is then a selection."""
    if module.ceil_mode or module.return_indices:
        raise UnsupportedModelError(f"Max pooling '{name}' with ceil_mode or return_indices is not supported.")
    features = tuple(value.tensor.shape[2:])
    one_d = len(features) == 2
    channels, height, width = (features[0], 1, features[1]) if one_d else features

    def pair(v, fill=1):
        return (fill, v if isinstance(v, int) else v[0]) if one_d else nn.modules.utils._pair(v)

    kernel, stride = pair(module.kernel_size), pair(module.stride or module.kernel_size)
    padding, dilation = pair(module.padding, 0), pair(module.dilation)
    index = torch.arange(1, channels * height * width + 1, dtype=torch.float64).reshape(1, channels, height, width)
    windows = F.unfold(index, kernel, dilation=dilation, padding=padding, stride=stride)
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    candidates = windows.reshape(channels, kernel[0] * kernel[1], out_h * out_w).permute(0, 2, 1)
    candidates = candidates.reshape(-1, kernel[0] * kernel[1]).long().numpy() - 1  # -1 marks padding
    coefficients = _coefficients(value)
    pieces, parent = state.pieces, np.arange(coefficients.shape[0])
    winners = np.zeros((coefficients.shape[0], len(candidates)), dtype=np.int64)
    chosen = np.zeros((coefficients.shape[0], len(candidates)), dtype=np.int64)
    for window, row in enumerate(candidates):
        row = row[row >= 0]
        if len(row) == 1:
            chosen[:, window] = row[0]
            continue
        # on a parent piece where one candidate is the largest everywhere, its descendants need no cut
        settled, first = geometry.argmax_settled(state.pieces, coefficients[:, row], state.tol)
        winners[:, window] = first[parent]
        chosen[:, window] = row[first[parent]]
        open_ = np.flatnonzero(~settled[parent])
        if len(open_) == 0:
            continue
        functions = coefficients[parent[open_][:, None], row[None, :]]
        cells, source, winner = geometry.partition_by_argmax(pieces.take(open_), functions, state.tol)
        rest = np.flatnonzero(settled[parent])
        pieces = geometry.Pieces.concatenate([pieces.take(rest), cells])
        parent = np.concatenate([parent[rest], parent[open_][source]])
        winners = np.concatenate([winners[rest], winners[open_][source]])
        chosen = np.concatenate([chosen[rest], chosen[open_][source]])
        winners[len(rest) :, window] = winner
        chosen[len(rest) :, window] = row[winner]
        if len(pieces) > state.max_regions:
            state.regroup(pieces, parent)
    state.regroup(pieces, parent)
    mapped = coefficients[parent[:, None], chosen]
    state.patterns.append(winners.astype(np.int8 if candidates.shape[1] <= 127 else np.int16))
    state.layers.append({"layer": name, "kind": "max_pool", "units": len(candidates), "regions": len(pieces)})
    shape = (channels, out_w) if one_d else (channels, out_h, out_w)
    return _to_affine(mapped, value.tensor, shape), parent
