"""The values carried through the piecewise-linear graph walk (see :mod:`._pwl`) and its shared refusal.

A value of the graph is held, for every current piece of the input domain, as its affine map in
the domain's ``k`` coordinates: a tensor ``(P, k + 1, *features)`` whose first ``k`` columns are
the linear part and whose last column is the constant (``f(x) = Σ_j x_j A_j + b`` on piece ``p``).
:class:`PartitionState` holds the pieces themselves, the activation patterns read so far and the
per-layer bookkeeping.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import fx

from deepscope.errors import DeepscopeError, UnsupportedModelError
from deepscope.expressivity import _geometry as geometry

__all__ = ["Affine", "PartitionState", "Rectified", "unsupported", "CHUNK"]

CHUNK = 4096  # pieces per block: (4096, 3, 256) float64 is 25 MB
_LINEAR_ROWS = 512  # pieces per block into a matmul (3 MB at 256 units): faster than 4096 on a 10-output layer


class Affine:
    """An affine map per piece: ``tensor (P, k + 1, *features)``.

    After a (leaky) ReLU the value is held lazily as a :class:`Rectified` (its parents' maps, each
    piece's parent and the units' signs): the Linear that usually follows multiplies it block by
    block (:meth:`Rectified.linear`) without materialising the ``(P, k + 1, units)`` tensor; any
    other use materialises it once, bit for bit the same.
    """

    __slots__ = ("_tensor", "rectified")

    def __init__(self, tensor: torch.Tensor | None = None, rectified: Rectified | None = None) -> None:
        if (tensor is None) == (rectified is None):
            raise TypeError("Affine takes a tensor or a Rectified, not both")
        self._tensor, self.rectified = tensor, rectified

    @property
    def tensor(self) -> torch.Tensor:
        if self._tensor is None:
            self._tensor, self.rectified = self.rectified.materialize(), None
        return self._tensor

    @property
    def shape(self) -> torch.Size:
        return self._tensor.shape if self._tensor is not None else self.rectified.shape

    @property
    def dtype(self) -> torch.dtype:
        return self._tensor.dtype if self._tensor is not None else self.rectified.source.dtype

    def take(self, index: torch.Tensor) -> Affine:
        """The maps of the pieces ``index`` (a lazy value stays lazy: its parents are re-indexed)."""
        if self.rectified is not None:
            return Affine(rectified=self.rectified.take(index))
        return Affine(self._tensor[index.to(self._tensor.device)])


@dataclasses.dataclass(frozen=True)
class Rectified:
    """A (leaky) ReLU's output on ``P'`` pieces: ``source[parent[i]] * s_i`` with ``s_iu`` 1 or ``slope``.

    ``source (P, k + 1, units)`` float64 on the CPU holds the pre-activation maps of the pieces the
    layer cut; ``parent (P',)`` names each new piece's; ``active (P', units)`` the units positive on
    it; ``features`` the layer's feature shape and ``device`` where the materialised value lives.
    """

    source: torch.Tensor
    parent: torch.Tensor
    active: torch.Tensor
    slope: float
    features: tuple[int, ...]
    device: torch.device

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.parent), self.source.shape[1], *self.features))

    def take(self, index: torch.Tensor) -> Rectified:
        index = index.cpu()
        return dataclasses.replace(self, parent=self.parent[index], active=self.active[index])

    def rows(self, start: int, stop: int, out: torch.Tensor | None = None, factor: torch.Tensor | None = None):
        """Pieces ``start:stop`` as ``(n, k + 1, units)``: the parents' maps times each unit's slope."""
        parent = self.parent[start:stop]
        gathered = torch.index_select(self.source, 0, parent, out=None if out is None else out[: len(parent)])
        scale = torch.empty(gathered.shape[0], gathered.shape[2], dtype=gathered.dtype) if factor is None else factor
        scale = scale[: len(parent)].copy_(self.active[start:stop])
        if self.slope:  # 1 or the slope (for a ReLU the 0/1 copy is that already)
            scale.mul_(1.0 - self.slope).add_(self.slope)
        return gathered.mul_(scale[:, None])

    def materialize(self) -> torch.Tensor:
        """The value ``(P', k + 1, *features)`` as one tensor."""
        count, columns, units = len(self.parent), self.source.shape[1], self.source.shape[2]
        mapped = torch.empty((count, columns, units), dtype=self.source.dtype)
        factor = torch.empty((min(count, CHUNK), units), dtype=self.source.dtype)
        for start in range(0, count, CHUNK):
            self.rows(start, start + CHUNK, out=mapped[start:], factor=factor)
        return mapped.to(self.device).reshape(count, columns, *self.features)

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``Linear(weight, bias)`` of the value, ``(P', k + 1, out)``, block by block (the bias on the constant)."""
        count, columns, units = len(self.parent), self.source.shape[1], self.source.shape[2]
        mapped = torch.empty((count, columns, weight.shape[0]), dtype=self.source.dtype)
        size = min(count, _LINEAR_ROWS)
        block = torch.empty((size, columns, units), dtype=self.source.dtype)
        factor = torch.empty((size, units), dtype=self.source.dtype)
        for start in range(0, count, size):
            rows = self.rows(start, start + size, out=block, factor=factor)
            torch.matmul(rows, weight.T, out=mapped[start : start + len(rows)])
        if bias is not None:
            mapped[:, -1] += bias
        return mapped.to(self.device)


@dataclasses.dataclass
class PartitionState:
    """The current pieces, their activation patterns so far, and the bookkeeping of the walk."""

    pieces: geometry.Pieces
    tol: float
    max_regions: int
    patterns: list[np.ndarray] = dataclasses.field(default_factory=list)
    layers: list[dict] = dataclasses.field(default_factory=list)

    def regroup(self, pieces: geometry.Pieces, parent: np.ndarray) -> None:
        self.pieces = pieces
        self.patterns = [pattern[parent] for pattern in self.patterns]
        if len(pieces) > self.max_regions:
            raise DeepscopeError(
                f"The exact partition has more than max_regions={self.max_regions} pieces; pass a smaller "
                "domain (bounds, margin, a line instead of a plane) or raise max_regions."
            )


def unsupported(node: fx.Node, what: str) -> UnsupportedModelError:
    """The refusal for a graph node the walk cannot follow exactly, naming the node and why."""
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", repr(node.target))
    kind = {"call_module": "layer", "call_function": "function", "call_method": "method"}.get(node.op, node.op)
    return UnsupportedModelError(
        f"Exact linear regions support piecewise-linear layers (Linear, Conv1d/2d, ReLU, LeakyReLU, MaxPool1d/2d, "
        f"eval BatchNorm, Flatten, residual additions, concatenation); {kind} '{target}' ({what}) is not one of them."
    )
