"""Shared pieces of the curvature operators: flat parameter vectors and in-memory batch sources."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, SequentialSampler

__all__ = ["ParameterSpace", "Batches", "batches_of", "reads_in_order"]

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class ParameterSpace:
    """Names, shapes and offsets of a set of parameters: converts dicts to flat vectors and back."""

    def __init__(self, params: Mapping[str, torch.Tensor]) -> None:
        self.names = list(params)
        self.shapes = [tuple(params[n].shape) for n in self.names]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.offsets = [0]
        for size in self.sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.numel = self.offsets[-1]

    def flatten(self, tensors: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate tensors (a dict keyed by name, or a sequence in name order) into one vector."""
        items = [tensors[n] for n in self.names] if isinstance(tensors, Mapping) else list(tensors)
        return torch.cat([t.reshape(-1) for t in items])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a vector of length ``numel`` into a dict of tensors shaped like the parameters."""
        return {
            name: vector[start:end].view(shape)
            for name, shape, start, end in zip(self.names, self.shapes, self.offsets, self.offsets[1:])
        }

    def slice_of(self, name: str) -> slice:
        """The positions of parameter ``name`` in the flat vector."""
        index = self.names.index(name)
        return slice(self.offsets[index], self.offsets[index + 1])


def batches_of(inputs: torch.Tensor, targets: torch.Tensor, batch_size: int | None = None) -> Batches:
    """A batch source over in-memory tensors (for the operator and the Monitor)."""
    size = len(inputs) if batch_size is None else batch_size

    def iterate() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(inputs), size):
            yield inputs[start : start + size], targets[start : start + size]

    return iterate


def reads_in_order(loader: Any) -> bool:
    """True for in-memory tensors (no loader) and for a DataLoader that reads its data set in order."""
    if loader is None:
        return True
    batch_sampler = getattr(loader, "batch_sampler", None)
    return type(batch_sampler) is BatchSampler and isinstance(batch_sampler.sampler, SequentialSampler)
