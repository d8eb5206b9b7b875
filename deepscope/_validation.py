"""Small shared validators; each raises InvalidParameterError with the standard message."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from deepscope.errors import invalid_parameter

__all__ = [
    "MAX_SEED",
    "check_seed",
    "check_int",
    "check_float",
    "check_float_sequence",
    "check_shape",
    "check_choice",
    "check_probability",
]


#: torch's generators take seeds below 2**64 (a larger one was a raw "Overflow when unpacking long long")
MAX_SEED = 2**64 - 1


def check_seed(value: Any, owner: str) -> int:
    """A seed: an int >= 0 (numpy refuses negatives) and at most :data:`MAX_SEED`; numpy ints accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise invalid_parameter("seed", owner, "an int >= 0", value)
    if value > MAX_SEED:
        raise invalid_parameter("seed", owner, "an int >= 0 and at most 2**64 - 1 (torch's seed range)", value)
    return int(value)


def check_int(value: Any, name: str, owner: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an int within [minimum, maximum]."""
    bounds = _bounds_text(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_parameter(name, owner, f"an int{bounds}", value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise invalid_parameter(name, owner, f"an int{bounds}", value)
    return value


def check_float(
    value: Any,
    name: str,
    owner: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> float:
    """Return ``value`` as a finite float within the bounds, or raise."""
    op = ">" if strict_minimum else ">="
    bounds = _bounds_text(minimum, maximum, op)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise invalid_parameter(name, owner, f"a finite float{bounds}", value)
    value = float(value)
    too_small = minimum is not None and (value <= minimum if strict_minimum else value < minimum)
    if too_small or (maximum is not None and value > maximum):
        raise invalid_parameter(name, owner, f"a finite float{bounds}", value)
    return value


def check_float_sequence(
    values: Any, name: str, owner: str, *, minimum: float | None = None, maximum: float | None = None
) -> list[float]:
    """A non-empty list, tuple or 1-D array of finite floats within the bounds, returned as a list of floats."""
    bounds = _bounds_text(minimum, maximum)
    if getattr(values, "ndim", None) == 1 and hasattr(values, "tolist"):  # a numpy array or torch tensor
        values = values.tolist()
    if isinstance(values, range):
        values = list(values)
    if not isinstance(values, (list, tuple)) or not values:
        raise invalid_parameter(name, owner, f"a non-empty list of finite floats{bounds}", values)
    return [check_float(value, name, owner, minimum=minimum, maximum=maximum) for value in values]


def check_shape(value: Any, name: str, owner: str) -> tuple[int, ...]:
    """A non-empty tuple (or list) of ints >= 1, such as one example's shape; returned as a tuple."""
    if not isinstance(value, (tuple, list)) or not value or not all(_is_size(n) for n in value):
        raise invalid_parameter(name, owner, "a tuple of ints >= 1 (one example's shape)", value)
    return tuple(int(n) for n in value)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_probability(value: Any, name: str, owner: str) -> float:
    """A float strictly between 0 and 1 (a confidence parameter such as delta)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise invalid_parameter(name, owner, "a float in the open interval (0, 1)", value)
    return float(value)


def check_choice(value: Any, name: str, owner: str, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise invalid_parameter(name, owner, f"one of {listed}", value)
    return value


def _bounds_text(minimum: Any, maximum: Any, op: str = ">=") -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" {op} {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
