"""Oracle: the affine map carried on every piece equals the network evaluated directly there.

A piecewise-linear network is affine on each final piece, so at the piece's vertices and interior
point the carried map ``x ↦ x·A + b`` must give ``model(origin + x·basis)``. Everything runs in
float64 on inputs of size ~1, so ``atol=1e-9`` is far above rounding (~1e-15) yet far below any
error from a wrong cut or a wrong pattern (a ReLU kink changes the output by O(0.1) at a vertex).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import UnsupportedModelError
from deepscope.expressivity import _geometry as geometry
from deepscope.expressivity import _pwl

ATOL = 1e-9


def _partition(model: nn.Module, bounds=(-1.0, 1.0, -1.0, 1.0), d_in=2, max_regions=10_000):
    """The exact partition of ``model`` over ``bounds`` in the first len(bounds)//2 input coordinates."""
    model = model.double().eval()
    k = len(bounds) // 2
    basis = torch.eye(d_in, dtype=torch.float64)[:k]
    start = torch.cat([basis, torch.zeros(1, d_in, dtype=torch.float64)])[None]  # (1, k + 1, d_in)
    state = _pwl.PartitionState(geometry.initial_pieces(bounds), 1e-9, max_regions)
    maps = _pwl.propagate(_pwl.trace(model), start, state).detach().numpy()
    return model, basis, state, maps


def _assert_maps_match_the_model(model, basis, state, maps):
    pieces = state.pieces
    points = [geometry.interior_points(pieces)]
    points += [pieces.vertices[:, i] for i in range(pieces.vertices.shape[1])]
    for coordinates in points:  # vertices padded with NaN in short pieces: skip those rows
        keep = ~np.isnan(coordinates).any(axis=1)
        carried = np.einsum("pk,pkc->pc", coordinates[keep], maps[keep, :-1]) + maps[keep, -1]
        with torch.no_grad():
            direct = model(torch.from_numpy(coordinates[keep]) @ basis).reshape(int(keep.sum()), -1).numpy()
        assert np.allclose(carried, direct, atol=ATOL)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(2, 4), nn.Linear(4, 2)

    def forward(self, x):
        hidden = torch.relu(self.first(x))
        return torch.cat([x + 2 * self.second(hidden) - 1, hidden.relu() / 4], dim=1)


def test_residual_arithmetic_and_concatenation_follow_the_graph():
    torch.manual_seed(1)
    _assert_maps_match_the_model(*_partition(_Residual()))


def test_a_non_piecewise_linear_layer_is_named_in_the_error():
    with pytest.raises(UnsupportedModelError, match="Tanh"):
        _partition(nn.Sequential(nn.Linear(2, 2), nn.Tanh()))


class _Untraceable(nn.Module):
    def forward(self, x):
        return x if float(x.sum()) > 0 else -x  # data-dependent control flow


def test_an_untraceable_model_raises_a_deepscope_error_and_a_bare_layer_traces_as_a_leaf():
    with pytest.raises(UnsupportedModelError, match="_Untraceable"):
        _pwl.trace(_Untraceable())
    graph = _pwl.trace(nn.Linear(2, 2))
    assert [node.op for node in graph.graph.nodes] == ["placeholder", "call_module", "output"]
