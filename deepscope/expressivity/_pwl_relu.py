"""ReLU and LeakyReLU in the piecewise-linear graph walk: cut every piece by every unit's zero line.

On a piece ``p`` unit ``u``'s pre-activation is affine, ``z_u(x) = Σ_j x_j A_pju + b_pu``; the
(leaky) ReLU is affine on the piece exactly when ``z_u`` keeps one sign there. So each piece is cut
by the zero line of each unit whose values at the piece's vertices take both signs (beyond
``tol``), in increasing unit order (the arrangement construction of SplineCam, Humayun et al.,
2023); on each final piece the layer is diagonal, ``σ(z)_u = s_u z_u`` with ``s_u`` 1 or the
negative slope according to the sign of ``z_u`` at the piece's interior point.

Most (piece, unit) pairs never need their vertices: a disc around the piece settles them
(:func:`_crossing_units`), and a new piece reads the sign of a settled unit from its parent
(:func:`_signs`). The output stays lazy (:class:`._pwl_values.Rectified`): the parents' maps, each
new piece's parent and its signs, multiplied into the next Linear block by block. On the 3x256 MLP
of ``bench/bench_expressivity.py`` the result is the same bit for bit as evaluating every pair and
materialising every piece's map.
"""

from __future__ import annotations

import numpy as np
import torch

from deepscope.expressivity import _geometry as geometry
from deepscope.expressivity._piece_buffer import PieceBuffer
from deepscope.expressivity._pwl_values import CHUNK, Affine, PartitionState, Rectified

__all__ = ["relu"]

_DISCS_FROM = 8  # cuts per parent from which the buffer keeps discs and skips lines that miss a piece
_BLOCK = 512  # parent pieces per block of the crossing test: (512, units) float64 arrays stay in cache


def relu(value: Affine, slope: float, name: str, state: PartitionState):
    """Cut the pieces by every unit's zero set; on each piece the (leaky) ReLU is then diagonal."""
    count, width = value.shape[:2]
    features = tuple(value.shape[2:])
    device = value.tensor.device
    maps = value.tensor.reshape(count, width, -1).detach().cpu()  # (P, k + 1, units)
    units = maps.shape[2]
    cut_parent, cut_unit, open_parent, open_unit, positive = _crossing_units(state.pieces, maps, state.tol)
    coefficients = maps.numpy()
    # each piece is cut by the units crossing its parent, in increasing unit order; pieces of
    # different parents are independent, so round r applies every piece's next cut at once (a
    # piece's cursor counts its cuts; a cut's two parts both go on with the next unit)
    first_cut = np.searchsorted(cut_parent, np.arange(count))
    cuts = np.bincount(cut_parent, minlength=count)
    buffer = PieceBuffer(state.pieces, track_discs=len(cut_unit) > _DISCS_FROM * count)
    while True:
        size = buffer.size
        parent, cursor = buffer.parent[:size], buffer.cursor[:size]
        slots = np.flatnonzero(buffer.alive[:size] & (cursor < cuts[parent]))
        if len(slots) == 0:
            break
        if buffer.centre is not None:  # skip the next units whose lines miss a piece's disc: no-op rounds
            slots = _skip_far_units(buffer, slots, first_cut, cuts, cut_unit, coefficients, state.tol)
            if len(slots) == 0:
                continue
        unit = cut_unit[first_cut[parent[slots]] + cursor[slots]]
        buffer.cursor[slots] += 1
        buffer.split(slots, coefficients[parent[slots], :, unit], state.tol)
        if len(buffer) > state.max_regions:
            state.regroup(*buffer.finish())
    pieces, parent = buffer.finish()
    state.regroup(pieces, parent)
    index = torch.from_numpy(parent)
    active = _signs(pieces, parent, maps, (open_parent, open_unit), positive)
    state.patterns.append(active.view(np.int8))  # 0/1, one byte each
    kind = "leaky_relu" if slope else "relu"
    state.layers.append({"layer": name, "kind": kind, "units": units, "regions": len(pieces)})
    return Affine(rectified=Rectified(maps, index, torch.from_numpy(active), float(slope), features, device)), parent


def _skip_far_units(buffer, slots, first_cut, cuts, cut_unit, coefficients, tol, lookahead: int = 16) -> np.ndarray:
    """Advance each slot's cursor past its next units (up to ``lookahead``) whose lines miss its disc.

    A round that applies such a unit leaves the piece unchanged, so skipping it changes nothing but
    the number of rounds (the first ReLU cuts one square by ~150 lines: most pieces meet few of them).
    Returns the slots that still have a unit to apply.
    """
    owner = buffer.parent[slots]
    position = first_cut[owner] + buffer.cursor[slots]
    ahead = position[:, None] + np.arange(lookahead)[None, :]
    inside = ahead < (first_cut[owner] + cuts[owner])[:, None]
    units = cut_unit[np.minimum(ahead, len(cut_unit) - 1)]
    near = buffer.near(slots, coefficients[owner[:, None], :, units], tol) | ~inside  # past the end: stop there
    buffer.cursor[slots] += np.where(near.any(axis=1), near.argmax(axis=1), lookahead)
    return slots[buffer.cursor[slots] < cuts[owner]]


def _crossing_units(pieces: geometry.Pieces, maps: torch.Tensor, tol: float) -> tuple[np.ndarray, ...]:
    """``(P, units)``: whether unit ``u``'s zero line cuts piece ``p`` (vertex values beyond ±tol·|a| on both sides).

    The test is exact at the vertices, but most (piece, unit) pairs are settled first by a disc:
    with ``c`` the piece's interior point and ``R`` its largest vertex distance from ``c``, every
    vertex value lies in ``f(c) ± |a| R``, so ``|f(c)| > |a| R + tol |a|`` (with a margin far above
    rounding) means one sign throughout. Only the remaining pairs are evaluated at the vertices.
    Returns ``(cut_piece, cut_unit, open_piece, open_unit, positive)``: the cuts and the pairs the
    disc did not settle (both sorted by piece, then unit), and ``f(c) > 0`` ``(P, units)`` (for the
    settled pairs, the sign of ``f`` everywhere on the piece).
    """
    count, width, units = maps.shape
    k = width - 1
    vertices, counts = pieces.vertices, pieces.counts
    # pad each polygon with copies of its first vertex so min/max over vertices need no mask
    padded = vertices.copy()
    invalid = np.arange(padded.shape[1])[None, :] >= counts[:, None]
    padded[invalid] = np.broadcast_to(padded[:, :1], padded.shape)[invalid]
    centre, radius = geometry.discs(pieces)
    padded_t, centre_t = torch.from_numpy(padded), torch.from_numpy(centre)
    # |f(v) - f(c)| <= |a| R at every vertex v; the 1e-10 terms exceed the rounding of f anywhere on the
    # piece (below 1e-15 (|a| (|c| + R) + |b|)) by far, so a pair outside the bound is settled exactly
    reach = torch.from_numpy(radius + tol + 1e-10 * (np.linalg.norm(centre, axis=1) + radius))[:, None]
    cuts, opens = [], []
    positive = np.zeros((count, units), dtype=bool)
    for start in range(0, count, _BLOCK):
        rows = slice(start, start + _BLOCK)
        a = maps[rows]
        norm = a[:, 0].square()
        for j in range(1, k):
            norm.addcmul_(a[:, j], a[:, j])
        norm.sqrt_()  # |a| (only bounds the pairs to check: any rounding is covered by the 1e-10 terms)
        at_centre = torch.mul(a[:, 0], centre_t[rows, 0, None])
        for j in range(1, k):
            at_centre.addcmul_(a[:, j], centre_t[rows, j, None])
        at_centre += a[:, k]
        bound = torch.abs(a[:, k]).mul_(1e-10).addcmul_(norm, reach[rows])
        torch.gt(at_centre, 0, out=torch.from_numpy(positive[rows]))
        near = at_centre.abs() <= bound
        piece, unit = torch.nonzero(near, as_tuple=True)
        if len(piece) == 0:
            continue
        opens.append((start + piece.numpy(), unit.numpy()))
        coefficients = a[piece, :, unit]  # (n, k + 1)
        margin = tol * coefficients[:, :k].square().sum(dim=1).sqrt()  # tol |a|, as in the exact test's definition
        corners = padded_t[start + piece]  # (n, M, k)
        values = corners[:, :, 0] * coefficients[:, 0, None]
        for j in range(1, k):
            values += corners[:, :, j] * coefficients[:, j, None]
        values += coefficients[:, k, None]
        limit = margin[:, None]
        cut = (values > limit).any(dim=1) & (values < -limit).any(dim=1)
        cuts.append((start + piece[cut].numpy(), unit[cut].numpy()))
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    cut_piece, cut_unit = (np.concatenate(column) for column in zip(empty, *cuts))
    open_piece, open_unit = (np.concatenate(column) for column in zip(empty, *opens))
    return cut_piece, cut_unit, open_piece, open_unit, positive


def _signs(pieces: geometry.Pieces, parent: np.ndarray, maps: torch.Tensor, open_pairs, positive) -> np.ndarray:
    """``(P', units)``: whether each unit is positive at each new piece's interior point.

    Where the disc settled a (parent, unit) pair the unit keeps one sign on the whole parent, with a
    margin far above rounding, so every piece cut from it reads that sign. The other pairs are
    evaluated at the piece's interior point, ``Σ_j x_j A_j + b`` in this order, as everywhere else.
    """
    count, width = len(parent), maps.shape[1]
    open_parent, open_unit = open_pairs  # sorted by parent, then unit
    per_parent = np.bincount(open_parent, minlength=maps.shape[0])
    repeats = per_parent[parent]
    points = torch.from_numpy(geometry.interior_points(pieces))
    if repeats.sum() > count * maps.shape[2] / 4:  # most pairs open (a parent cut by many lines): every pair
        return _all_signs(points, torch.from_numpy(parent), maps)
    active = positive[parent]
    first = np.cumsum(per_parent) - per_parent
    piece = np.repeat(np.arange(count), repeats)
    offset = np.arange(len(piece)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    unit = open_unit[np.repeat(first[parent], repeats) + offset]
    if len(piece) == 0:
        return active
    at = points[torch.from_numpy(piece)]
    coefficients = maps[torch.from_numpy(parent[piece]), :, torch.from_numpy(unit)]  # (n, k + 1)
    pre = torch.mul(at[:, 0], coefficients[:, 0])
    for j in range(1, width - 1):
        pre.add_(torch.mul(at[:, j], coefficients[:, j]))
    pre.add_(coefficients[:, width - 1])
    active[piece, unit] = (pre > 0).numpy()
    return active


def _all_signs(points: torch.Tensor, parent: torch.Tensor, maps: torch.Tensor) -> np.ndarray:
    """Every unit's sign at every piece's interior point, in blocks of pieces through reused buffers."""
    count, (_, width, units) = len(parent), maps.shape
    active = torch.empty((count, units), dtype=torch.bool)
    block = min(count, CHUNK)
    gathered = torch.empty((block, width, units), dtype=maps.dtype)
    pre_activation = torch.empty((block, units), dtype=maps.dtype)
    term = torch.empty_like(pre_activation)
    for start in range(0, count, CHUNK):
        rows = slice(start, start + CHUNK)
        size = len(parent[rows])
        mapped = torch.index_select(maps, 0, parent[rows], out=gathered[:size])
        pre, extra = pre_activation[:size], term[:size]
        torch.mul(points[rows, 0, None], mapped[:, 0], out=pre)
        for j in range(1, width - 1):
            pre.add_(torch.mul(points[rows, j, None], mapped[:, j], out=extra))
        pre.add_(mapped[:, width - 1])
        torch.gt(pre, 0, out=active[rows])
    return active.numpy()
