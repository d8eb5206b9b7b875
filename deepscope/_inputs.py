"""Model inputs of any kind: one float tensor, integer token ids, or a dict of tensors.

A batch of inputs is either a tensor whose first dimension is the batch (images, one-hot DNA,
integer token ids) or a mapping of names to such tensors (``{"input_ids": ..., "attention_mask":
...}``, as HuggingFace models take them). Every analysis moves, slices and feeds inputs through
these few functions, so integer ids are never cast to float and a dict is passed to the model as
keyword arguments (``model(**inputs)``) everywhere the same way.

Example:
    >>> batch = {"input_ids": torch.tensor([[1, 2], [3, 4]]), "attention_mask": torch.ones(2, 2)}
    >>> batch_length(batch)
    2
    >>> move(batch, dtype=torch.float64)["input_ids"].dtype  # ids keep their integer dtype
    torch.int64
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from deepscope.errors import DataError

__all__ = [
    "Inputs",
    "batch_length",
    "call_model",
    "concatenate",
    "describe",
    "example_shape",
    "floating",
    "is_mapping",
    "move",
    "rows",
    "slice_rows",
]

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


def is_mapping(inputs: Any) -> bool:
    """True for a dict-like batch of named tensors."""
    return isinstance(inputs, Mapping)


def _values(inputs: Inputs) -> list[torch.Tensor]:
    return list(inputs.values()) if is_mapping(inputs) else [inputs]  # type: ignore[union-attr]


def batch_length(inputs: Inputs, what: str = "inputs") -> int:
    """The number of examples; every tensor of a dict must have the same first dimension."""
    lengths = {}
    items = inputs.items() if is_mapping(inputs) else [("", inputs)]  # type: ignore[union-attr]
    for name, value in items:
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            kind = type(value).__name__ if not isinstance(value, torch.Tensor) else "a 0-d tensor"
            raise DataError(
                f"The {what}{f'[{name!r}]' if name else ''} must be a tensor with a batch dimension. Got {kind}."
            )
        lengths[name] = value.shape[0]
    if not lengths:
        raise DataError(f"The {what} are an empty dict: at least one named tensor is needed.")
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name!r}: {length}" for name, length in lengths.items())
        raise DataError(f"Every tensor of the {what} must have the same batch length. Got {shown}.")
    return next(iter(lengths.values()))


def _each(inputs: Inputs, function: Callable[[torch.Tensor], torch.Tensor]) -> Inputs:
    if is_mapping(inputs):
        return {name: function(value) for name, value in inputs.items()}  # type: ignore[union-attr]
    return function(inputs)  # type: ignore[arg-type]


def slice_rows(inputs: Inputs, start: int, stop: int) -> Inputs:
    """Examples ``start:stop`` (views, not copies)."""
    return _each(inputs, lambda value: value[start:stop])


def rows(inputs: Inputs, index: torch.Tensor | Sequence[int]) -> Inputs:
    """The examples at ``index`` (a copy, as advanced indexing makes)."""
    return _each(inputs, lambda value: value[torch.as_tensor(index, device=value.device, dtype=torch.long)])


def move(
    inputs: Inputs,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    copy: bool = True,
) -> Inputs:
    """A copy on ``device``; floating tensors cast to ``dtype``, integer and boolean ones keep theirs."""

    def one(value: torch.Tensor) -> torch.Tensor:
        cast = dtype if dtype is not None and value.is_floating_point() else None
        return value.to(device=device, dtype=cast, copy=copy)

    return _each(inputs, one)


def concatenate(batches: Sequence[Inputs]) -> Inputs:
    """Batches joined along the first dimension (dicts key by key)."""
    if not batches:
        raise DataError("No batches to join: at least one is needed.")
    if is_mapping(batches[0]):
        return {name: torch.cat([batch[name] for batch in batches]) for name in batches[0]}  # type: ignore[index]
    return torch.cat(list(batches))  # type: ignore[arg-type]


def call_model(model: Callable[..., Any], inputs: Inputs) -> Any:
    """``model(**inputs)`` for a dict of named tensors, ``model(inputs)`` for one tensor."""
    if is_mapping(inputs):
        return model(**inputs)  # type: ignore[arg-type]
    return model(inputs)


def example_shape(inputs: Inputs) -> Any:
    """The per-example shape: a tuple, or a dict of tuples for named inputs."""
    if is_mapping(inputs):
        return {name: tuple(value.shape[1:]) for name, value in inputs.items()}  # type: ignore[union-attr]
    return tuple(inputs.shape[1:])  # type: ignore[union-attr]


def describe(inputs: Inputs) -> str:
    """A short description for messages: ``float32 (3, 32, 32)`` or ``{'input_ids': int64 (16,), ...}``."""

    def one(value: torch.Tensor) -> str:
        return f"{str(value.dtype).removeprefix('torch.')} {tuple(value.shape[1:])}"

    if is_mapping(inputs):
        return "{" + ", ".join(f"{name!r}: {one(value)}" for name, value in inputs.items()) + "}"  # type: ignore[union-attr]
    return one(inputs)  # type: ignore[arg-type]


def floating(inputs: Inputs) -> list[torch.Tensor]:
    """The floating-point tensors of a batch (the ones NaN checks and input gradients concern)."""
    return [value for value in _values(inputs) if value.is_floating_point()]
