"""Max pooling: the pieces are cut where a window's argmax changes, and the maps equal the network there."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tests.expressivity.test__pwl import _assert_maps_match_the_model, _partition


def test_a_max_pool_is_cut_where_each_window_argmax_changes():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(2, 6), nn.Unflatten(1, (1, 6)), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(3, 2))
    model, basis, state, maps = _partition(model)
    assert state.layers[0]["kind"] == "max_pool" and state.layers[0]["units"] == 3
    assert set(np.unique(state.patterns[0])) <= {0, 1}  # the winner's position in its window of 2
    assert len(state.pieces) > 1  # (3 with this seed) so some window's winner does change in the square
    _assert_maps_match_the_model(model, basis, state, maps)
