"""The piece buffer: cuts in place, parents kept, and the disc shortcut never skipping a crossed piece."""

import numpy as np
import pytest

from deepscope.expressivity import _geometry as geometry
from deepscope.expressivity._piece_buffer import PieceBuffer

TOL = 1e-12


def test_buffer_cuts_in_place_and_keeps_parents():
    squares = geometry.Pieces.concatenate(
        [geometry.initial_pieces((0.0, 1.0, 0.0, 1.0)), geometry.initial_pieces((2.0, 3.0, 0.0, 1.0))]
    )
    buffer = PieceBuffer(squares)
    buffer.split(np.array([0, 1]), np.array([[1.0, 0.0, -0.5], [1.0, 0.0, -0.5]]), TOL)  # crosses square 0 only
    buffer.split(np.array([0, 1, 2]), np.array([[0.0, 1.0, -0.5]] * 3), TOL)  # y = 1/2 crosses all three
    pieces, parent = buffer.finish()
    assert len(pieces) == 6 and sorted(parent.tolist()) == [0, 0, 0, 0, 1, 1]
    assert geometry.measures(pieces).sum() == pytest.approx(2.0)


@pytest.mark.parametrize("track_discs", [True, False])
def test_a_round_of_cuts_equals_split_piece_by_piece_whatever_the_discs_skip(track_discs):
    # oracle: geometry.split on each piece alone (every vertex evaluated); lines through the pieces,
    # near them (within a disc but not crossing) and far away, over several rounds
    rng = np.random.default_rng(0)
    pieces = geometry.initial_pieces((-1.0, 1.0, -1.0, 1.0))
    buffer, reference = PieceBuffer(pieces, track_discs), [pieces]
    for _ in range(10):  # one line per round, the same for every piece (slot order need not match)
        slots = np.flatnonzero(buffer.alive[: buffer.size])
        line = rng.normal(size=3) * np.array([1.0, 1.0, 0.5])
        buffer.split(slots, np.repeat(line[None], len(slots), axis=0), TOL)
        cut = []
        for piece in reference:
            result = geometry.split(piece, line[None], TOL)
            cut += [piece] if result is None else [result[0].take(np.array([i])) for i in range(len(result[0]))]
        reference = cut
    pieces, _ = buffer.finish()
    assert len(pieces) == len(reference) > 20
    got = sorted(tuple(np.round(v[:c].ravel(), 12)) for v, c in zip(pieces.vertices, pieces.counts))
    expected = sorted(tuple(np.round(p.vertices[0, : p.counts[0]].ravel(), 12)) for p in reference)
    assert got == expected
    if not track_discs:
        return
    live = np.flatnonzero(buffer.alive[: buffer.size])  # the discs kept slot by slot are the pieces' discs
    centre, radius = geometry.discs(geometry.Pieces(buffer.vertices[live], buffer.counts[live]))
    np.testing.assert_allclose(buffer.centre[live], centre, rtol=0, atol=1e-15)
    np.testing.assert_allclose(buffer.radius[live], radius, rtol=0, atol=1e-15)
