"""A growable batch of convex pieces, cut in place: the rounds of cuts behind the ReLU partition.

Each slot holds a piece (padded vertices and count, as :class:`._geometry.Pieces`), the piece of
the original batch it descends from, a cursor for the caller, and the piece's disc (interior point
``c`` and radius ``R``, :func:`._geometry.discs`) when ``track_discs``: a line ``f = a·x + b`` with
``|f(c)| > |a|(R + tol)`` cannot cross the piece, so a round of cuts evaluates vertices only for the
pieces near their line. That pays when few parents are cut by many lines (the first ReLU cuts one
square by ~150 lines: 300k piece tests, most far from their line); with many parents cut by a few
lines each, most tested pieces are crossed and keeping the discs costs more than it saves.
"""

from __future__ import annotations

import numpy as np

from deepscope.expressivity._geometry import Pieces, clip_both, discs, signed_distances

__all__ = ["PieceBuffer"]


class PieceBuffer:
    """Pieces stored in growable arrays so that cutting one piece costs O(1) amortised, not O(P).

    A cut writes the positive part over the piece in place and appends the negative part; each
    slot remembers its ``parent`` (the piece it descends from when the buffer was made) and a
    ``cursor`` (the caller's count of cuts applied to it so far, copied to the appended part).
    """

    def __init__(self, pieces: Pieces, track_discs: bool = False) -> None:
        count = len(pieces)
        capacity = max(2 * count, 64)
        self.vertices = np.full((capacity, max(pieces.vertices.shape[1], 4), pieces.dim), np.nan)
        self.vertices[:count, : pieces.vertices.shape[1]] = pieces.vertices
        self.counts = np.zeros(capacity, dtype=np.int64)
        self.counts[:count] = pieces.counts
        self.parent = np.zeros(capacity, dtype=np.int64)
        self.parent[:count] = np.arange(count)
        self.cursor = np.zeros(capacity, dtype=np.int64)
        self.alive = np.zeros(capacity, dtype=bool)
        self.alive[:count] = True
        self.centre, self.radius, self.born, self.source = None, None, None, None
        if track_discs:
            self.born, self.source = np.full(capacity, -1, dtype=np.int64), np.arange(capacity)
            self.centre, self.radius = np.zeros((capacity, pieces.dim)), np.zeros(capacity)
            self.centre[:count], self.radius[:count] = discs(pieces)
        self.size = count
        self.dead = 0

    def __len__(self) -> int:
        return self.size - self.dead

    def split(self, slots: np.ndarray, coefficients: np.ndarray, tol: float) -> None:
        """Cut the pieces in ``slots`` that ``f = 0`` crosses (``coefficients`` one row per slot)."""
        if self.centre is not None:
            slots, coefficients = self._near(slots, coefficients, tol)
            if len(slots) == 0:
                return
        counts = self.counts[slots]
        width = int(counts.max())  # the buffer's padding columns beyond every piece's last vertex are unused
        distances = signed_distances(Pieces(self.vertices[slots, :width], counts), coefficients)
        valid = np.arange(width)[None, :] < counts[:, None]
        crossing = np.where(valid, distances > tol, False).any(axis=1) & np.where(valid, distances < -tol, False).any(
            axis=1
        )
        if not crossing.any():
            return
        index, distances = slots[crossing], distances[crossing]
        crossed = Pieces(self.vertices[index, :width], self.counts[index])
        (positive, positive_source), (negative, negative_source) = clip_both(crossed, distances, tol)
        self._widen(max(positive.vertices.shape[1], negative.vertices.shape[1]))
        kept = index[positive_source]
        self.vertices[kept] = np.nan
        self.vertices[kept, : positive.vertices.shape[1]] = positive.vertices
        self.counts[kept] = positive.counts
        if self.centre is not None:
            self.centre[kept], self.radius[kept] = discs(positive)
        survived = np.zeros(len(index), dtype=bool)
        survived[positive_source] = True
        lost = index[~survived]  # degenerate positive side (area below tol^2): rare
        if len(lost):
            self.alive[lost] = False
            self.dead += len(lost)
        added = len(negative_source)
        self._reserve(self.size + added)
        new = np.arange(self.size, self.size + added)
        self.vertices[new] = np.nan
        self.vertices[new, : negative.vertices.shape[1]] = negative.vertices
        self.counts[new] = negative.counts
        if self.centre is not None:
            self.centre[new], self.radius[new] = discs(negative)
        self.parent[new] = self.parent[index[negative_source]]
        self.cursor[new] = self.cursor[index[negative_source]]
        if self.born is not None:  # appended at the cursor's position, from this slot (see finish)
            self.born[new], self.source[new] = self.cursor[index[negative_source]], index[negative_source]
        self.alive[new] = True
        self.size += added

    def _near(self, slots: np.ndarray, coefficients: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
        """The slots (and their rows) whose disc comes within ``tol`` of the line: the others are not crossed."""
        near = self.near(slots, coefficients[:, None], tol)[:, 0]
        return slots[near], coefficients[near]

    def near(self, slots: np.ndarray, coefficients: np.ndarray, tol: float) -> np.ndarray:
        """``(n, L)``: whether each of ``L`` lines per slot (``coefficients (n, L, k + 1)``) comes within ``tol`` of its disc.

        A line that does not cannot cross the piece. The 1e-10 terms are far above the rounding of
        ``f`` anywhere on the piece. Needs ``track_discs``.
        """
        k = self.vertices.shape[2]
        centre, radius = self.centre[slots][:, None], self.radius[slots][:, None]
        slopes, constant = coefficients[..., :k], coefficients[..., k]
        norm = np.sqrt(np.square(slopes).sum(axis=-1))
        at_centre = (centre * slopes).sum(axis=-1) + constant
        reach = np.sqrt(np.square(centre).sum(axis=-1)) + radius
        return np.abs(at_centre) <= norm * (radius + tol) + 1e-10 * (norm * reach + np.abs(constant))

    def finish(self) -> tuple[Pieces, np.ndarray]:
        """The live pieces (trimmed) and their parents, in the order of their creation by rounds of cuts.

        When every slot applies its ``c``-th cut in round ``c`` (cursors never skip), slots are
        appended round by round, each round in slot order. With discs a slot may skip cuts that
        cannot cross it and reach its ``c``-th cut early; the pieces are then put back in that
        order (appended at cursor ``c`` from slot ``s``: by ``c``, then by the rank of ``s``), so the
        result does not depend on the skipping, down to the last bit of the next layer's matmul.
        """
        keep = np.flatnonzero(self.alive[: self.size])
        if self.born is not None:
            keep = keep[np.argsort(self._creation_rank()[keep])]
        width = int(self.counts[keep].max()) if len(keep) else 1
        return Pieces(self.vertices[keep, :width].copy(), self.counts[keep].copy()), self.parent[keep].copy()

    def _creation_rank(self) -> np.ndarray:
        """Each slot's position in the order the rounds would have created it (initial slots first)."""
        born, source = self.born[: self.size], self.source[: self.size]
        rank = np.empty(self.size, dtype=np.int64)
        initial = np.flatnonzero(born < 0)
        rank[initial] = np.arange(len(initial))
        appended = np.flatnonzero(born >= 0)
        appended = appended[np.argsort(born[appended], kind="stable")]
        starts = np.unique(born[appended], return_index=True)[1]
        next_rank = len(initial)
        for group in np.split(appended, starts[1:]) if len(appended) else []:
            group = group[np.argsort(rank[source[group]], kind="stable")]  # one cut per slot and round
            rank[group] = np.arange(next_rank, next_rank + len(group))
            next_rank += len(group)
        return rank

    def _widen(self, width: int) -> None:
        if width > self.vertices.shape[1]:
            extra = np.full((self.vertices.shape[0], width - self.vertices.shape[1], self.vertices.shape[2]), np.nan)
            self.vertices = np.concatenate([self.vertices, extra], axis=1)

    def _reserve(self, size: int) -> None:
        capacity = self.vertices.shape[0]
        if size <= capacity:
            return
        grow = max(size, 2 * capacity) - capacity
        self.vertices = np.concatenate([self.vertices, np.full((grow, *self.vertices.shape[1:]), np.nan)])
        self.counts = np.concatenate([self.counts, np.zeros(grow, dtype=np.int64)])
        self.parent = np.concatenate([self.parent, np.zeros(grow, dtype=np.int64)])
        self.cursor = np.concatenate([self.cursor, np.zeros(grow, dtype=np.int64)])
        self.alive = np.concatenate([self.alive, np.zeros(grow, dtype=bool)])
        if self.centre is not None:
            self.centre = np.concatenate([self.centre, np.zeros((grow, self.centre.shape[1]))])
            self.radius = np.concatenate([self.radius, np.zeros(grow)])
            self.born = np.concatenate([self.born, np.full(grow, -1, dtype=np.int64)])
            self.source = np.concatenate([self.source, np.zeros(grow, dtype=np.int64)])
