"""The walk's state: too many pieces stop it with a DeepscopeError; patterns follow the re-indexing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.errors import DeepscopeError
from deepscope.expressivity import _geometry as geometry
from deepscope.expressivity._pwl_values import PartitionState
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
