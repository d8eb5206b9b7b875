"""Shared pieces of the curvature operators: flat parameter vectors and in-memory batch sources."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, SequentialSampler

from deepscope import _inputs
from deepscope._attention import NOTE as ATTENTION_NOTE
from deepscope._attention import math_attention
from deepscope._inputs import Inputs
from deepscope._outputs import OutputFn, select_output

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = [
    "ParameterSpace",
    "Batches",
    "SecondOrder",
    "batches_of",
    "check_names",
    "fixed_batches",
    "functional_outputs",
    "reads_in_order",
    "result_note",
]

Batches = Callable[[], Iterable[tuple[Inputs, torch.Tensor]]]


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


def check_names(base: Mapping[str, torch.Tensor], names: list[str], owner: str) -> None:
    """Refuse an operator without trainable parameters, unknown ``names`` and non-float parameters."""
    from deepscope.errors import UnsupportedModelError, invalid_parameter

    if not base:
        raise UnsupportedModelError(f"{owner} found no trainable parameters: every parameter has requires_grad=False.")
    unknown = [n for n in names if n not in base]
    if unknown or not names:
        expected = f"a non-empty list of trainable parameter names from {list(base)[:6]}"
        raise invalid_parameter("parameter_names", owner, expected, unknown or names)
    floating = [n for n in names if not base[n].is_floating_point()]
    if floating:
        raise UnsupportedModelError(
            f"{owner} needs floating-point parameters; {floating[:3]} are {base[floating[0]].dtype}."
        )


def batches_of(inputs: Inputs, targets: torch.Tensor, batch_size: int | None = None) -> Batches:
    """A batch source over in-memory inputs (a tensor or a dict of tensors) and targets."""
    total = len(targets)
    size = total if batch_size is None else batch_size

    def iterate() -> Iterator[tuple[Inputs, torch.Tensor]]:
        for start in range(0, total, size):
            yield _inputs.slice_rows(inputs, start, start + size), targets[start : start + size]

    return iterate


def functional_outputs(
    model: torch.nn.Module,
    state: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
    x: Inputs,
    output_fn: OutputFn | None,
    owner: str,
) -> torch.Tensor:
    """``output_fn(model(x))`` with ``state = (params, buffers)`` substituted; ``model(**x)`` for a dict.

    ``functional_call`` keeps tied parameters tied: a shared weight given under one name is used
    everywhere the model uses it.
    """
    if _inputs.is_mapping(x):
        output = torch.func.functional_call(model, state, (), dict(x), strict=False)  # type: ignore[arg-type]
    else:
        output = torch.func.functional_call(model, state, (x,), strict=False)
    return select_output(output, output_fn, owner)


class SecondOrder:
    """``with second_order():`` runs fused attention on PyTorch's math kernel (double backward and
    forward-mode AD need it; :func:`deepscope._attention.math_attention`); ``seen`` records it ran.

    Watching costs a Python call per torch operation, so only the first block watches (a model
    calls attention on every pass or never); later blocks select the math kernel only when
    attention was seen (for a model without it, no context at all).
    """

    def __init__(self) -> None:
        self.seen = False
        self._watched = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if self._watched and not self.seen:
            yield
            return
        with math_attention(watch=not self._watched) as attention:
            yield
        self._watched = True
        self.seen = self.seen or attention.seen


def result_note(model: torch.nn.Module, fused_attention: bool = False) -> str:
    """The note of a curvature result: the guard's (train-mode modules run in eval semantics), and
    that fused attention ran on the math kernel when it did."""
    from deepscope.guard import current_guard_report

    report = current_guard_report(model)
    parts = [report.note] if report is not None and report.note else []
    if fused_attention:
        parts.append(ATTENTION_NOTE[0].upper() + ATTENTION_NOTE[1:] + ".")
    return " ".join(parts)


def reads_in_order(loader: Any) -> bool:
    """True for in-memory tensors (no loader) and for a DataLoader that reads its data set in order."""
    if loader is None:
        return True
    batch_sampler = getattr(loader, "batch_sampler", None)
    return type(batch_sampler) is BatchSampler and isinstance(batch_sampler.sampler, SequentialSampler)


def fixed_batches(problem: Problem, split: str, max_samples: int | None, batch_size: int | None) -> tuple[Batches, int]:
    """A batch source that yields the same samples on every pass, and their number.

    Curvature estimators apply the operator many times; each product must see the same matrix.

    * in-memory tensors, and a DataLoader that reads its data set in order: streamed as they are
      (the first ``max_samples`` samples);
    * a shuffling DataLoader (any other sampler) with ``max_samples`` smaller than the data: its
      first ``max_samples`` samples are drawn once and held in memory (a full pass would only change
      the order of the sum, so without ``max_samples`` it is streamed);
    * a DataLoader with ``drop_last=True``: it skips the last samples (another set on each pass
      when it shuffles) while the mean counts all of them, so the same data set is read whole, in
      order, by a loader of the same batch size and collate function.

    A data set with random augmentations still changes between passes: switch them off.
    """
    from deepscope.errors import UnsupportedModelError
    from deepscope.problem import DataSource

    source = problem.source(split)  # raises DataError for a missing split
    total = len(source) if max_samples is None else min(max_samples, len(source))
    loader = getattr(source, "loader", None)
    if total < len(source) and not reads_in_order(loader):
        inputs, targets = problem.tensors(split, max_samples=total)
        return batches_of(inputs, targets, batch_size or getattr(source, "batch_size", None)), len(inputs)
    if loader is not None and getattr(loader, "drop_last", False):
        if isinstance(loader.dataset, IterableDataset):
            raise UnsupportedModelError(
                f"The {split} DataLoader drops its last batch and reads an IterableDataset, so curvature "
                "cannot see every sample: use drop_last=False."
            )
        whole = DataLoader(loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn)
        in_order = DataSource(whole, name=split, batch_size=getattr(source, "batch_size", 256))

        def read_whole() -> Iterable[tuple[Inputs, torch.Tensor]]:
            return in_order.batches(batch_size, device=problem.device, dtype=problem.dtype, max_samples=max_samples)

        return read_whole, total

    def stream() -> Iterable[tuple[Inputs, torch.Tensor]]:
        return problem.batches(split, batch_size=batch_size, max_samples=max_samples)

    return stream, total
