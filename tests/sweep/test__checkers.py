"""The value checkers of sweep specs: normalised values back, ValueError saying what was expected."""

from __future__ import annotations

import math

import pytest

from deepscope.sweep._checkers import _bool, _choice, _float, _int, _int_list, _optional, _string, _text


def test_int_bounds_and_types():
    assert _int(1, 3)(3) == 3
    for bad in (0, 4, True, 2.0, "2"):
        with pytest.raises(ValueError, match=r"^an int >= 1 and <= 3$"):
            _int(1, 3)(bad)
    assert _int()(-5) == -5


def test_float_strict_bounds_and_non_finite():
    assert _float(0.0, 1.0)(1) == 1.0 and isinstance(_float()(1), float)
    with pytest.raises(ValueError, match=r"^a finite float > 0.0$"):
        _float(0.0, strict=True)(0.0)
    assert _float(0.0)(0.0) == 0.0  # not strict: the bound itself is allowed
    for bad in (math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match="a finite float"):
            _float()(bad)


def test_optional_choice_and_strings():
    assert _optional(_int(2))(None) is None and _optional(_int(2))(5) == 5
    with pytest.raises(ValueError, match="an int >= 2"):
        _optional(_int(2))(1)
    assert _choice("sgd", "adam")("adam") == "adam"
    with pytest.raises(ValueError, match="^one of 'sgd', 'adam'$"):
        _choice("sgd", "adam")("rmsprop")
    assert _string("x") == "x" and _text("") == ""
    with pytest.raises(ValueError, match="a non-empty string"):
        _string("  ")
    with pytest.raises(ValueError, match="^a string$"):
        _text(3)
    with pytest.raises(ValueError, match="true or false"):
        _bool(1)


def test_int_list():
    assert _int_list((1, 2)) == [1, 2]
    for bad in ([], [0], "12", [1, 2.5]):
        with pytest.raises(ValueError):
            _int_list(bad)
