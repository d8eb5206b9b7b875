"""Vectorised geometry of convex pieces (segments in 1-D, polygons in 2-D) cut by affine functions.

A batch of ``P`` convex pieces is stored as padded vertex arrays: ``vertices`` ``(P, M, k)`` with
``counts`` ``(P,)`` valid vertices per piece (2-D polygons are counter-clockwise or clockwise, in
order; 1-D segments have exactly two vertices ``[t0, t1]`` with ``t0 < t1``). An affine function on
the piece's coordinates is a row ``c`` of length ``k + 1``: ``f(x) = c[:k] · x + c[k]``.

Cutting uses a distance tolerance ``tol`` (in plane units): a vertex within ``tol`` of a cutting
line counts as lying on it, so that a cut never produces slivers thinner than ``tol``.
Everything is float64 NumPy; the batch is processed at once (no Python loop over pieces).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "Pieces",
    "initial_pieces",
    "signed_distances",
    "clip",
    "clip_both",
    "split",
    "interior_points",
    "measures",
    "discs",
    "signed_areas",
    "partition_by_argmax",
]


@dataclasses.dataclass
class Pieces:
    """A batch of convex pieces: ``vertices (P, M, k)`` padded with NaN, ``counts (P,)``."""

    vertices: np.ndarray
    counts: np.ndarray
    # interior points and disc radii, computed once per batch (the arrays are never changed in place)
    cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return self.vertices.shape[2]

    def __len__(self) -> int:
        return self.vertices.shape[0]

    def take(self, index: np.ndarray) -> Pieces:
        vertices = self.vertices[index]
        counts = self.counts[index]
        width = int(counts.max()) if len(counts) else vertices.shape[1]
        return Pieces(vertices[:, : max(width, 1)], counts)

    @staticmethod
    def concatenate(parts: list[Pieces]) -> Pieces:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no pieces to concatenate")
        width = max(p.vertices.shape[1] for p in parts)
        padded = []
        for part in parts:
            extra = width - part.vertices.shape[1]
            vertices = part.vertices
            if extra:
                vertices = np.concatenate([vertices, np.full((len(part), extra, part.dim), np.nan)], axis=1)
            padded.append(vertices)
        return Pieces(np.concatenate(padded), np.concatenate([p.counts for p in parts]))


def initial_pieces(bounds: tuple[float, ...]) -> Pieces:
    """One piece: the segment ``(t0, t1)`` or the rectangle ``(u0, u1, v0, v1)``."""
    if len(bounds) == 2:
        return Pieces(np.array([[[bounds[0]], [bounds[1]]]], dtype=np.float64), np.array([2]))
    u0, u1, v0, v1 = bounds
    corners = np.array([[[u0, v0], [u1, v0], [u1, v1], [u0, v1]]], dtype=np.float64)
    return Pieces(corners, np.array([4]))


def signed_distances(pieces: Pieces, coefficients: np.ndarray) -> np.ndarray:
    """Signed distance of each vertex to the zero set of its piece's affine function: ``(P, M)``.

    ``coefficients`` is ``(P, k + 1)``. A function that is constant on the plane gets "distance"
    ``value / tiny``: huge with the value's sign (never cut), or 0 when it is identically zero.
    """
    k = pieces.dim
    values = np.einsum("pmk,pk->pm", pieces.vertices, coefficients[:, :k]) + coefficients[:, k, None]
    norms = np.linalg.norm(coefficients[:, :k], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        return values / np.maximum(norms, 1e-300)[:, None]


def clip(
    pieces: Pieces, coefficients: np.ndarray, tol: float, distances: np.ndarray | None = None
) -> tuple[Pieces, np.ndarray]:
    """The part of each piece where ``f >= 0``; returns the non-empty parts and their source index.

    ``distances`` may pass ``signed_distances(pieces, coefficients)`` when the caller has it (the
    negative side of a cut is the same array negated, exactly: IEEE rounding is sign-symmetric).
    """
    if distances is None:
        distances = signed_distances(pieces, coefficients)
    if pieces.dim == 1:
        return _clip_segments(pieces, distances, tol)
    return _clip_polygons(pieces, distances, tol)


def clip_both(pieces: Pieces, distances: np.ndarray, tol: float) -> tuple[tuple[Pieces, np.ndarray], ...]:
    """``clip`` on both sides of each piece's line, ``f >= 0`` then ``f <= 0``, from the distances to it.

    The same as ``clip(pieces, c, tol, distances)`` and ``clip(pieces, -c, tol, -distances)`` bit for bit:
    the edges' crossings and intersection points do not depend on the side, so they are found once.
    """
    if pieces.dim == 1:
        return _clip_segments(pieces, distances, tol), _clip_segments(pieces, -distances, tol)
    return _clip_polygons(pieces, distances, tol, both=True)


def split(pieces: Pieces, coefficients: np.ndarray, tol: float) -> tuple[Pieces, np.ndarray] | None:
    """Cut every piece that ``f = 0`` crosses into its two sides.

    Returns ``(new_pieces, parent)`` where ``parent[i]`` is the index of the piece that
    ``new_pieces[i]`` came from, or ``None`` when no piece is crossed.
    """
    distances = signed_distances(pieces, coefficients)
    valid = np.arange(distances.shape[1])[None, :] < pieces.counts[:, None]
    above = np.where(valid, distances > tol, False).any(axis=1)
    below = np.where(valid, distances < -tol, False).any(axis=1)
    crossing = np.flatnonzero(above & below)
    if len(crossing) == 0:
        return None
    keep = np.flatnonzero(~(above & below))
    crossed = pieces.take(crossing)
    width = crossed.vertices.shape[1]
    (positive, positive_source), (negative, negative_source) = clip_both(crossed, distances[crossing, :width], tol)
    parts = [pieces.take(keep), positive, negative]
    parent = np.concatenate([keep, crossing[positive_source], crossing[negative_source]])
    return Pieces.concatenate(parts), parent


def interior_points(pieces: Pieces) -> np.ndarray:
    """A point strictly inside each piece (the mean of its vertices): ``(P, k)``."""
    if "interior" not in pieces.cache:
        valid = np.arange(pieces.vertices.shape[1])[None, :, None] < pieces.counts[:, None, None]
        pieces.cache["interior"] = np.where(valid, pieces.vertices, 0.0).sum(axis=1) / pieces.counts[:, None]
    return pieces.cache["interior"]  # as np.nanmean, faster


def discs(pieces: Pieces) -> tuple[np.ndarray, np.ndarray]:
    """Each piece's interior point ``c`` (:func:`interior_points`) and largest vertex distance ``R`` from it.

    Every point of a convex piece lies within ``R`` of ``c``, so an affine ``f = a·x + b`` stays in
    ``f(c) ± |a| R`` on the piece: a cheap test that settles most (piece, function) pairs before
    their vertices are evaluated.
    """
    centre = interior_points(pieces)
    if "radius" not in pieces.cache:
        offsets = np.square(pieces.vertices - centre[:, None]).sum(axis=2)
        valid = np.arange(pieces.vertices.shape[1])[None, :] < pieces.counts[:, None]
        pieces.cache["radius"] = np.sqrt(np.where(valid, offsets, 0.0).max(axis=1))
    return centre, pieces.cache["radius"]


def measures(pieces: Pieces) -> np.ndarray:
    """Length (1-D) or area (2-D, shoelace formula) of each piece: ``(P,)``."""
    if pieces.dim == 1:
        return pieces.vertices[:, 1, 0] - pieces.vertices[:, 0, 0]
    return np.abs(signed_areas(pieces))


def signed_areas(pieces: Pieces) -> np.ndarray:
    """Shoelace area of each polygon, positive when its vertices run counter-clockwise."""
    vertices, counts = pieces.vertices, pieces.counts
    index = np.arange(vertices.shape[1])[None, :]
    nxt = np.empty_like(vertices)  # each vertex's successor: the next column, the first for the last vertex
    nxt[:, :-1], nxt[:, -1] = vertices[:, 1:], vertices[:, 0]
    rows = np.arange(len(vertices))
    nxt[rows, np.maximum(counts, 1) - 1] = vertices[:, 0]
    cross = vertices[:, :, 0] * nxt[:, :, 1] - nxt[:, :, 0] * vertices[:, :, 1]
    cross = np.where(index < counts[:, None], cross, 0.0)
    return 0.5 * cross.sum(axis=1)


def _clip_segments(pieces: Pieces, distances: np.ndarray, tol: float) -> tuple[Pieces, np.ndarray]:
    t0, t1 = pieces.vertices[:, 0, 0], pieces.vertices[:, 1, 0]
    d0, d1 = distances[:, 0], distances[:, 1]
    keep0, keep1 = d0 >= -tol, d1 >= -tol
    with np.errstate(divide="ignore", invalid="ignore"):
        root = t0 + (t1 - t0) * d0 / (d0 - d1)
    start = np.where(keep0, t0, root)
    end = np.where(keep1, t1, root)
    with np.errstate(invalid="ignore"):
        nonempty = (keep0 | keep1) & (end - start > tol)
    source = np.flatnonzero(nonempty)
    vertices = np.stack([start[source], end[source]], axis=1)[:, :, None]
    return Pieces(vertices, np.full(len(source), 2)), source


def _clip_polygons(pieces: Pieces, distances: np.ndarray, tol: float, both: bool = False):
    """Sutherland-Hodgman against one half-plane, for a batch of convex polygons at once.

    With ``both``, the parts on the two sides (``f >= 0``, then ``f <= 0``): an edge's crossing and its
    intersection point are the same for both (IEEE arithmetic is symmetric under negation).
    """
    vertices, counts = pieces.vertices, pieces.counts
    count, width = vertices.shape[0], vertices.shape[1]
    index = np.arange(width)[None, :]
    valid = index < counts[:, None]
    following = (index + 1) % np.maximum(counts, 1)[:, None]
    next_distances = np.take_along_axis(distances, following, axis=1)
    next_vertices = np.take_along_axis(vertices, following[:, :, None], axis=1)
    crossing = valid & (((distances > tol) & (next_distances < -tol)) | ((distances < -tol) & (next_distances > tol)))
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(crossing, distances / (distances - next_distances), 0.0)
    intersections = vertices + fraction[:, :, None] * (next_vertices - vertices)
    candidates = np.stack([vertices, intersections], axis=2).reshape(count, 2 * width, 2)
    positive = _kept(candidates, valid & (distances >= -tol), crossing, tol)
    return (positive, _kept(candidates, valid & (distances <= tol), crossing, tol)) if both else positive


def _kept(candidates: np.ndarray, inside: np.ndarray, crossing: np.ndarray, tol: float) -> tuple[Pieces, np.ndarray]:
    """The polygons of the kept candidates (vertices inside, then crossings, edge by edge), non-empty ones only."""
    count = len(candidates)
    keep = np.stack([inside, crossing], axis=2).reshape(count, -1)
    # the kept candidates of each polygon, in order, moved to the front (a stable compaction)
    new_counts = keep.sum(axis=1)
    new_width = max(int(new_counts.max()) if count else 0, 3)
    new_vertices = np.full((count, new_width, 2), np.nan)
    rows, columns = np.nonzero(keep)
    new_vertices[rows, (np.cumsum(keep, axis=1) - 1)[rows, columns]] = candidates[rows, columns]
    source = np.flatnonzero(new_counts >= 3)
    result = Pieces(new_vertices[source], new_counts[source])
    if len(source):
        result = result.take(np.arange(len(source)))
        # a polygon reduced to vertices on the cutting line (touching, no area) is empty
        areas = measures(result)
        nonempty = areas > tol * tol
        result, source = result.take(np.flatnonzero(nonempty)), source[nonempty]
    return result, source


def partition_by_argmax(pieces: Pieces, functions: np.ndarray, tol: float) -> tuple[Pieces, np.ndarray, np.ndarray]:
    """Cut each piece into the convex cells where one of its ``m`` affine functions is the largest.

    ``functions`` is ``(P, m, k + 1)``. Exact ties (identical functions) go to the lowest index.
    Returns ``(cells, source, winner)``: ``source[i]`` is the piece that cell ``i`` lies in and
    ``winner[i]`` the index of the largest function there.
    """
    count, m, _ = functions.shape
    settled, first = argmax_settled(pieces, functions, tol)
    done = np.flatnonzero(settled)
    parts, sources, winners = [pieces.take(done)], [done], [first[done]]
    open_ = np.flatnonzero(~settled)
    for i in range(m if len(open_) else 0):
        cells, source = pieces.take(open_), open_
        for j in range(m):
            if j == i or len(cells) == 0:
                continue
            difference = _tie_broken(functions[source, i], functions[source, j], np.full(len(source), i < j), None)
            cells, kept = clip(cells, difference, tol)
            source = source[kept]
        parts.append(cells)
        sources.append(source)
        winners.append(np.full(len(source), i))
    cells = Pieces.concatenate(parts)
    if "radius" in pieces.cache:  # a settled piece is its own cell: its disc is known
        known = [(pieces.cache["interior"][done], pieces.cache["radius"][done])]
        known += [discs(part) for part in parts[1:] if len(part)]
        cells.cache.update(interior=np.concatenate([c for c, _ in known]), radius=np.concatenate([r for _, r in known]))
    return cells, np.concatenate(sources), np.concatenate(winners)


def argmax_settled(pieces: Pieces, functions: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Whether one function is the largest on the whole piece, and which (at an interior point).

    ``functions`` is ``(P, m, k + 1)``; returns ``settled (P,)`` and ``first (P,)``.
    """
    count, m, width = functions.shape
    k = width - 1
    rows = np.arange(count)
    points, radius = discs(pieces)
    first = np.argmax(np.einsum("pmk,pk->pm", functions[:, :, :k], points) + functions[:, :, k], axis=1)
    valid = np.arange(pieces.vertices.shape[1])[None, :] < pieces.counts[:, None]
    best = functions[rows, first]
    reach = np.linalg.norm(points, axis=1) + radius
    settled = np.ones(count, dtype=bool)
    for j in range(m):
        difference = _tie_broken(best, functions[:, j], first < j, first > j)
        # every vertex's distance to the difference's zero line is at least (its value at the centre)/|a| - R:
        # those pieces are settled for j without their vertices (the 1e-9 margin is far above rounding)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            slopes = difference[:, :k]
            norm = np.maximum(
                np.sqrt(np.einsum("pk,pk->p", slopes, slopes)), 1e-300
            )  # only bounds: rounding is covered
            at_centre = np.einsum("pk,pk->p", difference[:, :k], points) + difference[:, k]
            sure = at_centre / norm - radius >= -tol + 1e-9 * (reach + np.abs(difference[:, k]) / norm)
        open_ = np.flatnonzero(settled & ~sure)
        if len(open_):
            distances = signed_distances(Pieces(pieces.vertices[open_], pieces.counts[open_]), difference[open_])
            settled[open_] = np.where(valid[open_], distances >= -tol, True).all(axis=1)
    return settled, first


def _largest_magnitude(rows: np.ndarray) -> np.ndarray:
    """``np.abs(rows).max(axis=1)`` column by column (exact, and fast for a few columns of strided rows)."""
    largest = np.abs(rows[:, 0])
    for column in range(1, rows.shape[1]):
        np.maximum(largest, np.abs(rows[:, column]), out=largest)
    return largest


def _tie_broken(f_i: np.ndarray, f_j: np.ndarray, i_first: np.ndarray, j_first: np.ndarray | None) -> np.ndarray:
    """``f_i - f_j``, replaced by the constant +1 (i wins) or -1 (j wins) where the two are identical."""
    difference = f_i - f_j
    scale = np.maximum(_largest_magnitude(f_i), _largest_magnitude(f_j))
    identical = _largest_magnitude(difference) <= 1e-13 * scale
    if identical.any():
        difference = difference.copy()
        difference[identical] = 0.0
        difference[identical, -1] = np.where(i_first[identical], 1.0, -1.0)
        if j_first is not None:
            same = identical & ~i_first & ~j_first  # i == j: the function against itself
            difference[same, -1] = 0.0
    return difference
