"""ReLU and LeakyReLU in the piecewise-linear graph walk: cut every piece by every unit's zero line.

On a piece ``p`` unit ``u``'s pre-activation is affine, ``z_u(x) = Σ_j x_j A_pju + b_pu``; the
(leaky) ReLU is affine on the piece exactly when ``z_u`` keeps one sign there. So each piece is cut
by the zero line of each unit whose values at the piece's vertices take both signs (beyond
``tol``), in increasing unit order (the arrangement construction of SplineCam, Humayun et al.,
2023); on each final piece the layer is diagonal, ``σ(z)_u = s_u z_u`` with ``s_u`` 1 or the
negative slope according to the sign of ``z_u`` at the piece's interior point.
"""

from __future__ import annotations

import numpy as np
import torch

from deepscope.expressivity import _geometry as geometry
from deepscope.expressivity._pwl_values import Affine, PartitionState

__all__ = ["relu"]

_CHUNK = 4096


def relu(value: Affine, slope: float, name: str, state: PartitionState):
    """Cut the pieces by every unit's zero set; on each piece the (leaky) ReLU is then diagonal."""
    tensor = value.tensor
    count, width = tensor.shape[:2]
    k = width - 1
    maps = tensor.reshape(count, width, -1).detach().cpu()  # (P, k + 1, units)
    units = maps.shape[2]
    # pad each polygon with copies of its first vertex so min/max over vertices need no mask
    padded = state.pieces.vertices.copy()
    invalid = np.arange(padded.shape[1])[None, :] >= state.pieces.counts[:, None]
    padded[invalid] = np.broadcast_to(padded[:, :1], padded.shape)[invalid]
    vertices = torch.from_numpy(padded)
    homogeneous = torch.cat([vertices, torch.ones(*vertices.shape[:2], 1, dtype=vertices.dtype)], dim=2)
    crosses = torch.zeros((count, units), dtype=torch.bool)
    for start in range(0, count, 1024):
        block = slice(start, start + 1024)
        values = torch.bmm(homogeneous[block], maps[block])  # (p, vertices, units)
        margin = state.tol * maps[block, :k].square().sum(dim=1).sqrt()
        crosses[block] = (values.amax(dim=1) > margin) & (values.amin(dim=1) < -margin)
    coefficients = maps.numpy()
    # each piece is cut by the units crossing its parent, in increasing unit order; pieces of
    # different parents are independent, so round r applies every piece's next cut at once (a
    # piece's cursor counts its cuts; a cut's two parts both go on with the next unit)
    cut_parent, cut_unit = np.nonzero(crosses.numpy())  # sorted by parent, then by unit
    first_cut = np.searchsorted(cut_parent, np.arange(count))
    cuts = np.bincount(cut_parent, minlength=count)
    buffer = geometry.PieceBuffer(state.pieces)
    while True:
        size = buffer.size
        parent, cursor = buffer.parent[:size], buffer.cursor[:size]
        slots = np.flatnonzero(buffer.alive[:size] & (cursor < cuts[parent]))
        if len(slots) == 0:
            break
        unit = cut_unit[first_cut[parent[slots]] + cursor[slots]]
        buffer.cursor[slots] += 1
        buffer.split(slots, coefficients[parent[slots], :, unit], state.tol)
        if len(buffer) > state.max_regions:
            state.regroup(*buffer.finish())
    pieces, parent = buffer.finish()
    state.regroup(pieces, parent)
    mapped = maps.index_select(0, torch.from_numpy(parent))
    points = torch.from_numpy(geometry.interior_points(pieces))
    active = torch.empty((len(mapped), units), dtype=torch.bool)
    # (Σ_j x_j A_j) + b at each piece's interior point, then the (leaky) ReLU's slope on each unit, in
    # blocks of pieces through two small reused buffers: at ~40k pieces x 256 units a fresh float64
    # (P, units) temporary is ~80 MB of newly mapped pages, and such page faults were a third of the
    # run's CPU time
    block = min(len(mapped), _CHUNK)
    pre_activation = torch.empty((block, units), dtype=mapped.dtype)
    term = torch.empty_like(pre_activation)
    for start in range(0, len(mapped), _CHUNK):
        rows = slice(start, start + _CHUNK)
        size = len(mapped[rows])
        pre, extra = pre_activation[:size], term[:size]
        torch.mul(points[rows, 0, None], mapped[rows, 0], out=pre)
        for j in range(1, k):
            pre.add_(torch.mul(points[rows, j, None], mapped[rows, j], out=extra))
        pre.add_(mapped[rows, k])
        torch.gt(pre, 0, out=active[rows])
        factor = extra.copy_(active[rows]).mul_(1.0 - slope).add_(slope)  # 1 or the slope, in float64
        mapped[rows].mul_(factor[:, None])
    state.patterns.append(active.numpy().astype(np.int8))
    kind = "leaky_relu" if slope else "relu"
    state.layers.append({"layer": name, "kind": kind, "units": units, "regions": len(pieces)})
    return Affine(_reshaped(mapped, tensor)), parent


def _reshaped(mapped: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mapped.to(like.device).reshape(mapped.shape[0], *like.shape[1:])
