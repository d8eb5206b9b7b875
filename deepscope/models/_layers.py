"""Small shared pieces of the reference architectures: activation lookup and argument checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from deepscope._validation import check_choice, check_float, check_int
from deepscope.errors import invalid_parameter

__all__ = ["ACTIVATIONS", "make_activation", "check_input_shape", "check_widths", "check_dropout"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def make_activation(name: str, owner: str) -> nn.Module:
    """A fresh activation module by name (a new instance per use, so hooks see each use separately)."""
    check_choice(name, "activation", owner, ACTIVATIONS)
    return ACTIVATIONS[name]()


def check_input_shape(input_shape: Any, owner: str, ndim: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints whose length is one of ``ndim`` (batch excluded)."""
    expected = " or ".join(str(n) for n in ndim)
    if isinstance(input_shape, int) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise invalid_parameter(
            "input_shape", owner, f"a tuple of {expected} positive ints (one example, no batch)", input_shape
        ) from None
    valid = all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    if not valid or len(shape) not in ndim:
        raise invalid_parameter(
            "input_shape", owner, f"a tuple of {expected} positive ints (one example, no batch)", input_shape
        )
    return shape


def check_widths(widths: Any, name: str, owner: str, allow_empty: bool = True) -> tuple[int, ...]:
    """A tuple of positive ints (layer widths or channel counts)."""
    if isinstance(widths, int) and not isinstance(widths, bool):
        widths = (widths,)
    try:
        values = tuple(widths)
    except TypeError:
        raise invalid_parameter(name, owner, "a sequence of positive ints", widths) from None
    if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in values):
        raise invalid_parameter(name, owner, "a sequence of positive ints", widths)
    if not values and not allow_empty:
        raise invalid_parameter(name, owner, "a non-empty sequence of positive ints", widths)
    return values


def check_dropout(dropout: Any, owner: str) -> float:
    """A dropout probability in [0, 1)."""
    value = check_float(dropout, "dropout", owner, minimum=0.0, maximum=1.0)
    if value >= 1.0:
        raise invalid_parameter("dropout", owner, "a finite float in [0, 1)", dropout)
    return value


def check_classes(num_classes: Any, owner: str) -> int:
    """The output width: an int >= 1."""
    return check_int(num_classes, "num_classes", owner, minimum=1)
