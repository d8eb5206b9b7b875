"""ReLU cuts: kinks where they are by hand, and the partition equal to cutting piece by piece, unit by unit.

The maps are checked with the walk's oracle (:func:`tests.expressivity.test__pwl._assert_maps_match_the_model`:
the carried affine map equals the network at every vertex and interior point).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.expressivity import _geometry as geometry
from tests.expressivity.test__pwl import ATOL, _assert_maps_match_the_model, _partition


def test_a_line_through_two_relus_is_cut_exactly_at_their_kinks():
    layer = nn.Linear(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0], [1.0]]))
        layer.bias.copy_(torch.tensor([0.0, -0.5]))  # kinks at t = 0 and t = 0.5
    model, basis, state, maps = _partition(nn.Sequential(layer, nn.ReLU()), bounds=(-1.0, 1.0), d_in=1)
    order = np.argsort(state.pieces.vertices[:, 0, 0])
    assert np.allclose(np.sort(state.pieces.vertices[order, :2, 0], axis=1), [[-1, 0], [0, 0.5], [0.5, 1]])
    assert state.patterns[0][order].tolist() == [[0, 0], [1, 0], [1, 1]]
    assert state.layers == [{"layer": "1", "kind": "relu", "units": 2, "regions": 3}]
    # slopes by hand: 0 on t<0, (1, 0) on 0<t<0.5, (1, 1) after; constants 0, 0, (0, -0.5)
    assert np.allclose(maps[order, 0], [[0, 0], [1, 0], [1, 1]], atol=ATOL)
    assert np.allclose(maps[order, 1], [[0, 0], [0, 0], [0, -0.5]], atol=ATOL)
    _assert_maps_match_the_model(model, basis, state, maps)


def test_a_leaky_relu_keeps_its_slope_on_the_negative_side():
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.bias.fill_(-1.0)  # kink at t = 0.5
    model, basis, state, maps = _partition(nn.Sequential(layer, nn.LeakyReLU(0.25)), bounds=(-1.0, 1.0), d_in=1)
    order = np.argsort(state.pieces.vertices[:, 0, 0])
    assert np.allclose(maps[order, 0, 0], [0.5, 2.0], atol=ATOL)  # 0.25·2 below the kink, 2 above
    assert state.layers[0]["kind"] == "leaky_relu"
    _assert_maps_match_the_model(model, basis, state, maps)


def test_a_plane_through_a_random_mlp_is_partitioned_and_affine_on_every_piece():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model, basis, state, maps = _partition(model)
    assert maps.shape == (len(state.pieces), 3, 3)
    assert geometry.measures(state.pieces).sum() == pytest.approx(4.0, abs=1e-9)  # the pieces tile the square
    patterns = np.concatenate(state.patterns, axis=1)
    assert len({row.tobytes() for row in patterns}) == len(state.pieces) > 1  # one pattern per piece
    _assert_maps_match_the_model(model, basis, state, maps)


def _cut_piece_by_piece(model: nn.Sequential, bounds, tol, slope=0.0):
    """Reference partition: every piece cut by every unit's zero line in turn, one piece at a time.

    This is the definition the vectorised walk implements (and what it did unit by unit before the
    cuts of different pieces were batched into rounds): after each Linear + ReLU, each piece is split
    by unit 0's line, both parts by unit 1's, and so on; the pattern is read at the interior point.
    Returns ``(vertices list, patterns (P, units))``.
    """
    pieces = [(geometry.initial_pieces(bounds), np.eye(3, 2))]  # the plane's coordinates: x = u, y = v
    patterns = [np.zeros(0, dtype=np.int8)]
    layers = [m for m in model if isinstance(m, nn.Linear)]
    for layer in layers[:-1]:
        weight, bias = layer.weight.detach().double(), layer.bias.detach().double()
        next_pieces, next_patterns = [], []
        for (piece, affine), pattern in zip(pieces, patterns):
            pre = torch.matmul(torch.from_numpy(affine)[None], weight.T)[0]  # as the walk's Linear fast path
            pre[-1] += bias
            pre = pre.numpy()
            parts = [piece]
            for unit in range(pre.shape[1]):
                cut = []
                for part in parts:
                    result = geometry.split(part, pre[None, :, unit], tol)
                    cut += [part] if result is None else [result[0].take(np.array([i])) for i in range(len(result[0]))]
                parts = cut
            for part in parts:
                point = geometry.interior_points(part)[0]
                active = (point @ pre[:2] + pre[2]) > 0
                next_pieces.append((part, pre * np.where(active, 1.0, slope)[None]))
                next_patterns.append(np.concatenate([pattern, active.astype(np.int8)]))
        pieces, patterns = next_pieces, next_patterns
    return [p.vertices[0, : p.counts[0]] for p, _ in pieces], np.array(patterns)


@pytest.mark.parametrize(("seed", "slope", "depth"), [(0, 0.0, 2), (1, 0.0, 2), (2, 0.0, 2), (3, 0.0, 3), (4, 0.1, 3)])
def test_the_partition_is_every_piece_cut_by_every_unit_in_turn(seed, slope, depth):
    # the same polygons, vertex for vertex: both sides cut the same pieces by the same lines, so the
    # only difference allowed is the last bit of a coefficient (1e-12 of the unit square's size)
    torch.manual_seed(seed)
    hidden = [nn.Linear(2, 12), nn.LeakyReLU(slope) if slope else nn.ReLU()]
    for _ in range(depth - 1):  # each ReLU's output feeds a Linear: the lazy path from the parents' maps
        hidden += [nn.Linear(12, 12), nn.LeakyReLU(slope) if slope else nn.ReLU()]
    model = nn.Sequential(*hidden, nn.Linear(12, 3)).double()
    bounds, tol = (-2.0, 2.0, -2.0, 2.0), 1e-9  # _partition's absolute tolerance
    expected_vertices, expected_patterns = _cut_piece_by_piece(model, bounds, tol, slope)
    _, _, state, _ = _partition(model, bounds=bounds)
    got = np.concatenate(state.patterns, axis=1)
    assert len(got) == len(expected_patterns) > 50
    order_got, order_expected = np.lexsort(got.T[::-1]), np.lexsort(expected_patterns.T[::-1])
    assert np.array_equal(got[order_got], expected_patterns[order_expected])  # every region once, same patterns
    for i, j in zip(order_got, order_expected):
        count = state.pieces.counts[i]
        assert count == len(expected_vertices[j])
        assert np.allclose(state.pieces.vertices[i, :count], expected_vertices[j], rtol=0, atol=1e-12)


def _dense(count, units, cut_piece, cut_unit, open_piece, open_unit, positive):
    """``(crosses, unsure, positive)`` as ``(P, units)`` arrays, checking the pairs' order on the way."""
    crosses, unsure = np.zeros((count, units), dtype=bool), np.zeros((count, units), dtype=bool)
    for piece, unit, dense in ((cut_piece, cut_unit, crosses), (open_piece, open_unit, unsure)):
        order = piece * units + unit
        assert (np.diff(order) > 0).all()  # sorted by piece, then unit, each pair once
        dense[piece, unit] = True
    return crosses, unsure, positive


def test_the_crossing_test_agrees_with_every_vertex_evaluated():
    # oracle: the definition (values at every vertex beyond ±tol·|a| on both sides), on pieces of a
    # random arrangement and on lines through their vertices and just beside them, where the disc
    # shortcut must hand the pair to the exact test
    from deepscope.expressivity._pwl_relu import _crossing_units

    rng = np.random.default_rng(3)
    pieces = geometry.initial_pieces((-1.0, 1.0, -1.0, 1.0))
    for _ in range(6):
        result = geometry.split(pieces, rng.normal(size=(len(pieces), 3)), 1e-9)
        pieces = pieces if result is None else result[0]
    units = 40
    maps = rng.normal(size=(len(pieces), 3, units))
    corner = pieces.vertices[:, 0]  # lines through a vertex, then nudged by ±0.5 tol and ±2 tol
    for u, nudge in enumerate([0.0, 0.5e-9, -0.5e-9, 2e-9, -2e-9]):
        norm = np.linalg.norm(maps[:, :2, u], axis=1)
        maps[:, 2, u] = -(corner * maps[:, :2, u]).sum(axis=1) + nudge * norm
    tol = 1e-9
    got, unsure, positive = _dense(len(pieces), 40, *_crossing_units(pieces, torch.from_numpy(maps), tol))
    expected = np.zeros_like(got)
    for p in range(len(pieces)):
        corners = pieces.vertices[p, : pieces.counts[p]]
        values = corners @ maps[p, :2] + maps[p, 2]  # (corners, units)
        margin = tol * np.linalg.norm(maps[p, :2], axis=0)
        expected[p] = (values > margin).any(axis=0) & (values < -margin).any(axis=0)
        settled = ~unsure[p]  # the disc's sign holds at every vertex, hence on the whole piece
        assert ((values[:, settled] > 0) == positive[p, settled][None]).all()
    assert np.array_equal(got, expected)
    assert 0 < expected.sum() < expected.size
    assert not unsure[expected == 0].all() and unsure[expected].all()  # every cut was checked at the vertices


@pytest.mark.parametrize("offset", [0.05, 20.0])  # most lines through the pieces (every pair evaluated), or few
def test_the_signs_of_new_pieces_equal_the_pre_activations_at_their_interior_points(offset):
    # oracle: Σ_j x_j A_j + b at each piece's interior point, from its parent's maps, for every unit
    from deepscope.expressivity._pwl_relu import _crossing_units, _signs

    rng = np.random.default_rng(5)
    parents = geometry.initial_pieces((-1.0, 1.0, -1.0, 1.0))
    for _ in range(4):
        result = geometry.split(parents, rng.normal(size=(len(parents), 3)), 1e-9)
        parents = parents if result is None else result[0]
    maps = rng.normal(size=(len(parents), 3, 30))
    maps[:, 2] *= offset
    maps = torch.from_numpy(maps)
    cut_piece, cut_unit, open_piece, open_unit, positive = _crossing_units(parents, maps, 1e-9)
    unsure = _dense(len(parents), 30, cut_piece, cut_unit, open_piece, open_unit, positive)[1]
    pieces, parent = parents, np.arange(len(parents))
    for _ in range(3):  # cut the parents further by random lines, keeping track of each piece's parent
        result = geometry.split(pieces, rng.normal(size=(len(pieces), 3)), 1e-9)
        if result is not None:
            pieces, parent = result[0], parent[result[1]]
    got = _signs(pieces, parent, maps, (open_piece, open_unit), positive)
    points = geometry.interior_points(pieces)
    expected = np.einsum("pk,pku->pu", points, maps.numpy()[parent, :2]) + maps.numpy()[parent, 2] > 0
    assert np.array_equal(got, expected)
    assert 0 < unsure.sum() < unsure.size


def test_skipping_lines_that_miss_a_piece_changes_nothing_not_even_the_order(monkeypatch):
    # oracle: the same walk with every piece tested against every line of its parent in every round
    # (no discs): same pieces in the same order, same patterns, maps equal bit for bit
    from deepscope.expressivity import _pwl_relu

    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(2, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 3)).double()
    runs = []
    for threshold in (0, 10**9):  # discs for every layer, then for none
        monkeypatch.setattr(_pwl_relu, "_DISCS_FROM", threshold)
        _, _, state, maps = _partition(model, bounds=(-3.0, 3.0, -3.0, 3.0))
        runs.append((state.pieces.vertices, np.concatenate(state.patterns, axis=1), maps))
    (vertices, patterns, maps), (vertices_0, patterns_0, maps_0) = runs
    assert len(patterns) > 200
    assert np.array_equal(vertices, vertices_0, equal_nan=True) and np.array_equal(patterns, patterns_0)
    assert np.array_equal(maps, maps_0)
