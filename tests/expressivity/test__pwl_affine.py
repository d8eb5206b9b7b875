"""Affine layers map every piece's affine map without cutting: the Linear fast path and the generic path agree."""

from __future__ import annotations

import operator

import torch

from deepscope.expressivity._pwl_affine import affine, arithmetic, concatenate, reshape
from deepscope.expressivity._pwl_values import Affine


def test_linear_fast_path_equals_the_generic_layer_path():
    # nn.Linear maps take one matmul with the bias on the constant column; a subclass takes the
    # generic path (run the layer on every column, subtract the bias): both give the same maps
    class Generic(torch.nn.Linear):
        pass

    torch.manual_seed(0)
    fast, generic = torch.nn.Linear(6, 4).double(), Generic(6, 4).double()
    generic.load_state_dict(fast.state_dict())
    maps = torch.randn(5, 3, 6, dtype=torch.float64)  # 5 pieces, k = 2 directions + constant column
    torch.testing.assert_close(affine(fast, Affine(maps), None).tensor, affine(generic, Affine(maps), None).tensor)


def test_a_constant_moves_only_the_constant_column_and_products_scale_every_column():
    # x - 1 on a piece: the same directions, the constant lowered by 1; 3·x scales all k + 1 columns
    maps = torch.randn(4, 3, 5, dtype=torch.float64)
    shifted = arithmetic(operator.sub, (Affine(maps), 1.0), None).tensor
    torch.testing.assert_close(shifted[:, :-1], maps[:, :-1], rtol=0, atol=0)
    torch.testing.assert_close(shifted[:, -1], maps[:, -1] - 1.0, rtol=0, atol=0)
    reflected = arithmetic(operator.sub, (1.0, Affine(maps)), None).tensor  # 1 - x
    torch.testing.assert_close(reflected[:, -1], 1.0 - maps[:, -1], rtol=0, atol=0)
    torch.testing.assert_close(arithmetic(operator.mul, (Affine(maps), 3.0), None).tensor, 3.0 * maps)


def test_concatenation_and_reshape_act_on_the_features_not_on_pieces_or_columns():
    left, right = torch.randn(4, 3, 2, dtype=torch.float64), torch.randn(4, 3, 5, dtype=torch.float64)
    joined = concatenate(([Affine(left), Affine(right)], 1), {}, None).tensor  # torch.cat([l, r], dim=1)
    assert joined.shape == (4, 3, 7) and torch.equal(joined[..., 2:], right)
    grid = reshape(Affine(joined.reshape(4, 3, 7)), None, shape=(-1, 7, 1)).tensor
    assert grid.shape == (4, 3, 7, 1)
    assert reshape(Affine(grid), None, flatten_from=1).tensor.shape == (4, 3, 7)
