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

__all__ = ["Affine", "PartitionState", "unsupported"]


@dataclasses.dataclass
class Affine:
    """An affine map per piece: ``tensor (P, k + 1, *features)``."""

    tensor: torch.Tensor


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
