"""The one error root of deepscope and its few subclasses.

Every validation failure raises a :class:`DeepscopeError` subclass whose message names the
parameter, what was expected and what was received, in one shape::

    The 'k' parameter of hessian_eigenvalues must be an int >= 1. Got 0 instead.

The CLI catches :class:`DeepscopeError`, prints ``error: <message>`` and exits with status 2.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DeepscopeError",
    "InvalidParameterError",
    "DataError",
    "UnsafeFileError",
    "UnsupportedModelError",
    "NonFiniteError",
    "invalid_parameter",
    "describe",
]


class DeepscopeError(Exception):
    """Root of every error deepscope raises on purpose."""


class InvalidParameterError(DeepscopeError, ValueError):
    """An argument has the wrong type, shape or value."""


class DataError(DeepscopeError, ValueError):
    """Data that cannot be used: empty, NaN, mismatched shapes, labels out of range, missing file."""


class UnsafeFileError(DeepscopeError):
    """A file would need full unpickling (arbitrary code execution) and the caller did not opt in."""


class UnsupportedModelError(DeepscopeError):
    """The model contains a layer or structure an analysis cannot handle exactly."""


class NonFiniteError(UnsupportedModelError):
    """The model's weights (or what it computes on the given inputs) are NaN or infinite.

    Any result computed from them would be NaN; the message names the parameter and its layer.
    """


def describe(value: Any) -> str:
    """A short, human description of ``value`` for error messages (type and shape, not contents)."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)) and any(hasattr(v, "shape") and hasattr(v, "dtype") for v in value):
        # several tensors (e.g. a model's inputs): each one's type and shape, never their contents
        return f"a {type(value).__name__} of {len(value)} ({', '.join(describe(v) for v in value)})"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def invalid_parameter(
    name: str, owner: str, expected: str, got: Any, *, cls: type[DeepscopeError] = InvalidParameterError
) -> DeepscopeError:
    """Build the standard error: ``The 'name' parameter of owner must be expected. Got ... instead.``

    Returns the exception (the caller raises it) so tracebacks point at the validation site.
    """
    return cls(f"The '{name}' parameter of {owner} must be {expected}. Got {describe(got)} instead.")


def cannot_take_inputs(shape: tuple[int, ...], error: BaseException, what: str = "inputs") -> DataError:
    """The one message for a model that fails on inputs of the given per-example ``shape``.

    ``The model cannot take the <what> of shape (4,) per example: <first line of the error>``;
    shared by Problem (``what="training inputs"``) and the attribution methods.
    """
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return DataError(f"The model cannot take the {what} of shape {tuple(shape)} per example: {reason}")
