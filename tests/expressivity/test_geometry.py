"""Convex-piece geometry behind linear_regions: exact cuts of squares and segments, argmax cells, the buffer."""

import numpy as np
import pytest

from deepscope.expressivity import _geometry as geometry

TOL = 1e-12


def test_split_square_by_a_vertical_line():
    square = geometry.initial_pieces((0.0, 1.0, 0.0, 1.0))
    pieces, parent = geometry.split(square, np.array([[1.0, 0.0, -0.3]]), TOL)  # x = 0.3
    assert len(pieces) == 2 and (parent == 0).all()
    np.testing.assert_allclose(np.sort(geometry.measures(pieces)), [0.3, 0.7], atol=1e-15)
    assert geometry.split(square, np.array([[1.0, 0.0, -2.0]]), TOL) is None  # the line misses the square


def test_clip_keeps_the_nonnegative_side_and_drops_touching_pieces():
    square = geometry.initial_pieces((0.0, 1.0, 0.0, 1.0))
    half, source = geometry.clip(square, np.array([[1.0, 1.0, -1.0]]), TOL)  # x + y >= 1: a triangle
    assert geometry.measures(half)[0] == pytest.approx(0.5) and half.counts[0] == 3
    touching, _ = geometry.clip(square, np.array([[-1.0, -1.0, 0.0]]), TOL)  # only the corner (0, 0)
    assert len(touching) == 0


def test_segments_split_at_the_root():
    segment = geometry.initial_pieces((0.0, 2.0))
    pieces, _ = geometry.split(segment, np.array([[2.0, -1.0]]), TOL)  # 2t - 1 = 0 at t = 1/2
    np.testing.assert_allclose(np.sort(pieces.vertices[:, :, 0], axis=0), [[0.0, 0.5], [0.5, 2.0]])


def test_argmax_cells_of_three_planes():
    # f0 = x, f1 = y, f2 = 0.6 on the unit square: three convex cells whose areas are known exactly
    square = geometry.initial_pieces((0.0, 1.0, 0.0, 1.0))
    functions = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.6]]])
    cells, source, winner = geometry.partition_by_argmax(square, functions, TOL)
    areas = dict(zip(winner.tolist(), geometry.measures(cells)))
    assert areas[2] == pytest.approx(0.36)  # x, y < 0.6
    assert areas[0] == pytest.approx(0.32) and areas[1] == pytest.approx(0.32)  # split by x = y
    assert (source == 0).all()


def test_identical_functions_tie_to_the_lowest_index():
    square = geometry.initial_pieces((0.0, 1.0, 0.0, 1.0))
    functions = np.array([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    cells, _, winner = geometry.partition_by_argmax(square, functions, TOL)
    assert len(cells) == 1 and winner.tolist() == [0]


def test_clip_with_given_distances_and_their_negation_is_the_same_as_computing_them():
    # random convex polygons (regular 3- to 8-gons) cut by random lines: passing the distances (and
    # their negation for the other side) must give the very same polygons, bit for bit
    rng = np.random.default_rng(0)
    sides = rng.integers(3, 9, 200)
    angles = [np.sort(rng.uniform(0, 2 * np.pi, n)) for n in sides]
    vertices = np.full((200, 8, 2), np.nan)
    for i, a in enumerate(angles):
        vertices[i, : len(a)] = rng.normal(size=2) + np.stack([np.cos(a), np.sin(a)], 1)
    pieces = geometry.Pieces(vertices, sides)
    lines = rng.normal(size=(200, 3))
    distances = geometry.signed_distances(pieces, lines)
    for sign in (1.0, -1.0):
        expected, expected_source = geometry.clip(pieces, sign * lines, 1e-9)
        got, source = geometry.clip(pieces, sign * lines, 1e-9, sign * distances)
        assert np.array_equal(source, expected_source) and 50 < len(source) < 200
        assert np.array_equal(got.counts, expected.counts)
        assert np.array_equal(got.vertices, expected.vertices, equal_nan=True)
    # the compaction keeps the kept vertices in order: a square cut through two sides has 4 corners
    square = geometry.initial_pieces((0.0, 1.0, 0.0, 1.0))
    half, _ = geometry.clip(square, np.array([[1.0, 0.0, -0.5]]), 1e-9)
    assert half.vertices[0, : half.counts[0]].tolist() == [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]


def test_discs_contain_every_vertex_and_touch_the_farthest():
    square = geometry.initial_pieces((0.0, 2.0, 0.0, 2.0))
    centre, radius = geometry.discs(square)
    np.testing.assert_allclose(centre, [[1.0, 1.0]])
    np.testing.assert_allclose(radius, [np.sqrt(2.0)])
    triangle = geometry.Pieces(np.array([[[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [np.nan, np.nan]]]), np.array([3]))
    centre, radius = geometry.discs(triangle)  # centroid (1, 1); farthest vertices at sqrt(5)
    np.testing.assert_allclose(centre, [[1.0, 1.0]])
    np.testing.assert_allclose(radius, [np.sqrt(5.0)])


def test_argmax_settled_agrees_with_every_vertex_checked():
    # oracle: the definition, every (piece, rival) pair evaluated at every vertex; the disc shortcut
    # must neither settle a piece a rival beats somewhere nor leave open one it settles
    rng = np.random.default_rng(0)
    square = geometry.initial_pieces((-1.0, 1.0, -1.0, 1.0))
    pieces, _ = geometry.split(square, np.array([[1.0, 0.3, 0.1]]), TOL)
    for _ in range(5):
        lines = rng.normal(size=(len(pieces), 3))
        result = geometry.split(pieces, lines, TOL)
        pieces = pieces if result is None else result[0]
    functions = rng.normal(size=(len(pieces), 4, 3))
    functions[0, 2] = functions[0, 1]  # an identical pair ties to the lower index
    settled, first = geometry.argmax_settled(pieces, functions, TOL)
    expected = []
    for p in range(len(pieces)):
        corners = pieces.vertices[p, : pieces.counts[p]]
        values = corners @ functions[p, :, :2].T + functions[p, :, 2]  # (corners, m)
        rivals = [j for j in range(4) if not np.array_equal(functions[p, j], functions[p, first[p]])]
        margins = [
            (values[:, first[p]] - values[:, j]) / np.linalg.norm(functions[p, first[p], :2] - functions[p, j, :2])
            for j in rivals
        ]
        expected.append(all((m >= -TOL).all() for m in margins))
    assert settled.tolist() == expected
    assert 0 < settled.sum() < len(pieces)  # both kinds occur


def test_clip_both_is_clip_on_each_side_bit_for_bit_and_interior_points_are_nanmeans():
    # oracle: the one-sided clip with the coefficients and distances negated (what split did before)
    rng = np.random.default_rng(1)
    pieces = geometry.initial_pieces((-1.0, 1.0, -1.0, 1.0))
    for _ in range(5):
        result = geometry.split(pieces, rng.normal(size=(len(pieces), 3)), TOL)
        pieces = pieces if result is None else result[0]
    lines = rng.normal(size=(len(pieces), 3))
    distances = geometry.signed_distances(pieces, lines)
    both = geometry.clip_both(pieces, distances, TOL)
    one_by_one = geometry.clip(pieces, lines, TOL, distances), geometry.clip(pieces, -lines, TOL, -distances)
    for (got, got_source), (expected, expected_source) in zip(both, one_by_one):
        assert np.array_equal(got.vertices, expected.vertices, equal_nan=True)
        assert np.array_equal(got.counts, expected.counts) and np.array_equal(got_source, expected_source)
    assert np.array_equal(geometry.interior_points(pieces), np.nanmean(pieces.vertices, axis=1))


def test_signed_areas_match_the_shoelace_formula_vertex_by_vertex():
    # oracle: Σ_m (x_m y_{m+1} - x_{m+1} y_m) / 2 with m + 1 taken modulo each polygon's vertex count
    rng = np.random.default_rng(2)
    pieces = geometry.initial_pieces((-1.0, 1.0, -1.0, 1.0))
    for _ in range(5):
        result = geometry.split(pieces, rng.normal(size=(len(pieces), 3)), TOL)
        pieces = pieces if result is None else result[0]
    expected = []
    for vertices, count in zip(pieces.vertices, pieces.counts):
        x, y = vertices[:count, 0], vertices[:count, 1]
        expected.append(0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    np.testing.assert_allclose(geometry.signed_areas(pieces), expected, rtol=1e-13, atol=1e-15)
    assert len(set(pieces.counts.tolist())) > 1  # polygons of several sizes


def test_argmax_cells_carry_the_discs_of_their_pieces():
    # oracle: the discs computed afresh from the cells' vertices (a settled piece is its own cell)
    rng = np.random.default_rng(3)
    pieces = geometry.initial_pieces((-1.0, 1.0, -1.0, 1.0))
    for _ in range(5):
        result = geometry.split(pieces, rng.normal(size=(len(pieces), 3)), TOL)
        pieces = pieces if result is None else result[0]
    cells, _, _ = geometry.partition_by_argmax(pieces, rng.normal(size=(len(pieces), 3, 3)), TOL)
    assert len(cells) > len(pieces)  # some pieces were cut into cells
    fresh = geometry.discs(geometry.Pieces(cells.vertices, cells.counts))
    np.testing.assert_array_equal(cells.cache["interior"], fresh[0])
    np.testing.assert_array_equal(cells.cache["radius"], fresh[1])
