"""The walk's state: too many pieces stop it with a DeepscopeError; patterns follow the re-indexing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import DeepscopeError
from deepscope.expressivity import _geometry as geometry
from deepscope.expressivity._pwl_values import Affine, PartitionState, Rectified
from tests.expressivity.test__pwl import _partition


def test_too_many_pieces_stop_the_walk():
    torch.manual_seed(0)
    with pytest.raises(DeepscopeError, match="max_regions=2"):
        _partition(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)), max_regions=2)


def test_regroup_reindexes_the_patterns_read_so_far():
    square = geometry.initial_pieces((0.0, 1.0, 0.0, 1.0))
    state = PartitionState(square, 1e-9, 10)
    state.patterns.append(np.array([[1, 0], [0, 1]], dtype=np.int8))
    two = geometry.Pieces.concatenate([square, square, square])
    state.regroup(two, np.array([1, 1, 0]))
    assert state.patterns[0].tolist() == [[0, 1], [0, 1], [1, 0]] and len(state.pieces) == 3


def _rectified(seed=0, parents=5, children=12, units=7, slope=0.0):
    generator = torch.Generator().manual_seed(seed)
    source = torch.randn(parents, 3, units, dtype=torch.float64, generator=generator)
    parent = torch.randint(0, parents, (children,), generator=generator)
    active = torch.rand(children, units, generator=generator) > 0.5
    return Rectified(source, parent, active, slope, (units,), torch.device("cpu"))


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_a_rectified_value_is_its_parents_maps_times_each_units_slope(slope):
    # oracle: the definition, element by element; products by exactly 1 or the slope are exact,
    # so the lazy value equals it bit for bit
    lazy = _rectified(slope=slope)
    one, negative = torch.tensor(1.0, dtype=torch.float64), torch.tensor(slope, dtype=torch.float64)
    factor = torch.where(lazy.active, one, negative)  # 1·(1 - s) + s rounds to exactly 1 for these slopes
    expected = lazy.source[lazy.parent] * factor[:, None, :]
    assert torch.equal(Affine(rectified=lazy).tensor, expected)
    index = torch.tensor([3, 3, 0, 11])
    assert torch.equal(Affine(rectified=lazy).take(index).tensor, expected[index])  # stays lazy, same rows
    assert Affine(rectified=lazy).take(index).rectified is not None


def test_a_linear_layer_on_a_rectified_value_equals_the_layer_on_the_materialised_value():
    lazy = _rectified(seed=1, children=1500)  # over several blocks of pieces
    weight, bias = torch.randn(4, 7, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    expected = torch.matmul(lazy.materialize(), weight.T)
    expected[:, -1] += bias  # the bias on the constant column only
    # same products and sums, in blocks of rows: equal up to the last bit at most
    torch.testing.assert_close(lazy.linear(weight, bias), expected, rtol=1e-15, atol=1e-15)
