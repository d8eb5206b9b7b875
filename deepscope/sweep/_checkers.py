"""The value checkers of sweep specs and experiment parameters.

A checker takes a value and returns it normalised, or raises ``ValueError`` whose text says what
was expected (``"a finite float > 0"``); :func:`deepscope.sweep.spec.parse_spec` turns each into
a ``(key path, message)`` problem of one :class:`~deepscope.sweep.spec.SpecError`. The factories
(``_int(1)``, ``_float(0.0, strict=True)``, ``_choice("sgd", "adam")``) build checkers with bounds.

Example:
    >>> _float(0.0, strict=True)(0.5)
    0.5
    >>> _int(1)(0)
    Traceback (most recent call last):
    ...
    ValueError: an int >= 1
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["_bool", "_choice", "_float", "_int", "_int_list", "_optional", "_range", "_string", "_text"]


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"an int{_range(minimum, maximum)}")
        return int(value)

    return check


def _float(minimum: float | None = None, maximum: float | None = None, strict: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
        text = f"a finite float{_range(minimum, maximum, '>' if strict else '>=')}"
        if not ok:
            raise ValueError(text)
        value = float(value)
        low = minimum is not None and (value <= minimum if strict else value < minimum)
        if low or (maximum is not None and value > maximum):
            raise ValueError(text)
        return value

    return check


def _optional(checker: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        return None if value is None else checker(value)

    return check


def _choice(*choices: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError("one of " + ", ".join(repr(c) for c in choices))
        return value

    return check


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("a non-empty list of ints >= 1")
    return [_int(1)(v) for v in value]


def _range(minimum: Any, maximum: Any, op: str = ">=") -> str:
    parts = ([f" {op} {minimum}"] if minimum is not None else []) + ([f" <= {maximum}"] if maximum is not None else [])
    return " and".join(parts)
