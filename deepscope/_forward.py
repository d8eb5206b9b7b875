"""The first forward pass of an analysis, with the one clear error for inputs the model cannot take.

Problem, the attribution methods, the trainer and the model-and-inputs analyses (ntk, lipschitz,
layer_health, capacity) all run the model once on the user's inputs before any real work. Where
that pass fails with a shape or type error, they all raise the same
:func:`deepscope.errors.cannot_take_inputs` DataError instead of a raw ``RuntimeError`` (or, for
analyses that trace the model, a "ShapeProp error" with a printed traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

from deepscope._inputs import describe, is_mapping
from deepscope.errors import DataError, DeepscopeError, cannot_take_inputs

__all__ = ["first_forward"]

T = TypeVar("T")


def first_forward(forward: Callable[[Any], T], inputs: Any, what: str = "inputs", *, shape: Any = None) -> T:
    """``forward(inputs)``; a model that cannot take them raises the shared :class:`DataError`.

    ``what`` names the inputs in the message ("inputs", "training inputs"); ``shape`` is the
    per-example shape it shows (default ``inputs.shape[1:]``; for a dict of named inputs, each
    one's dtype and per-example shape, ``{'input_ids': int64 (16,), ...}``). A :class:`DeepscopeError` raised by
    the model or by ``forward`` (e.g. "pass output_fn") and an out-of-memory error pass unchanged:
    they are not about the inputs' shape.

    Example:
        >>> first_forward(torch.nn.Linear(3, 2), torch.zeros(1, 4))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        deepscope.errors.DataError: The model cannot take the inputs of shape (4,) per example: ...
    """
    try:
        return forward(inputs)
    except (DeepscopeError, torch.cuda.OutOfMemoryError):
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        if shape is None and is_mapping(inputs):  # named inputs: say each one's dtype and shape
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(f"The model cannot take the {what} {describe(inputs)} per example: {reason}") from error
        per_example = tuple(inputs.shape[1:]) if shape is None else tuple(shape)
        raise cannot_take_inputs(per_example, error, what) from error
