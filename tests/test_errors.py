"""The one error root: the hierarchy callers catch, and the message shapes every module shares."""

from __future__ import annotations

import pytest
import torch

from deepscope.errors import (
    DataError,
    DeepscopeError,
    InvalidParameterError,
    NonFiniteError,
    UnsafeFileError,
    UnsupportedModelError,
    cannot_take_inputs,
    describe,
    invalid_parameter,
)


def test_every_error_is_a_deepscope_error_and_value_errors_stay_value_errors():
    for cls in (InvalidParameterError, DataError, UnsafeFileError, UnsupportedModelError, NonFiniteError):
        assert issubclass(cls, DeepscopeError)
    assert issubclass(InvalidParameterError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(NonFiniteError, UnsupportedModelError) and not issubclass(UnsafeFileError, ValueError)


def test_invalid_parameter_names_what_was_expected_and_received():
    error = invalid_parameter("k", "hessian_eigenvalues", "an int >= 1", 0)
    assert isinstance(error, InvalidParameterError)  # returned, not raised: the caller raises it
    assert str(error) == "The 'k' parameter of hessian_eigenvalues must be an int >= 1. Got 0 instead."
    assert type(invalid_parameter("x", "f", "y", 1, cls=DataError)) is DataError


def test_describe_shows_type_and_shape_not_contents():
    assert describe(torch.zeros(2, 3)) == "Tensor of shape (2, 3) and dtype torch.float32"
    assert describe("abc") == "'abc'"
    long = describe("x" * 200)
    assert len(long) == 80 and long.endswith("...")


def test_describe_names_each_tensor_of_a_tuple():
    several = describe((torch.zeros(2, 3), torch.zeros(2, 5, dtype=torch.float64)))
    assert several == (
        "a tuple of 2 (Tensor of shape (2, 3) and dtype torch.float32, Tensor of shape (2, 5) and dtype torch.float64)"
    )
    assert describe((1, 2)) == "(1, 2)"  # a tuple of numbers is shown as it is


def test_cannot_take_inputs_keeps_the_first_line_of_the_cause():
    error = cannot_take_inputs((4,), RuntimeError("mat1 and mat2 shapes cannot be multiplied\nmore detail"))
    assert isinstance(error, DataError)
    assert str(error) == (
        "The model cannot take the inputs of shape (4,) per example: mat1 and mat2 shapes cannot be multiplied"
    )
    assert str(cannot_take_inputs((1,), KeyError(), "training inputs")).endswith("per example: KeyError")
    with pytest.raises(DataError, match="training inputs of shape"):
        raise cannot_take_inputs((3,), ValueError("bad"), "training inputs")


def test_every_error_class_is_exported_from_the_package_root():
    import deepscope
    import deepscope.errors as errors

    for name in ("DeepscopeError", "InvalidParameterError", "DataError", "UnsafeFileError", "UnsupportedModelError"):
        assert getattr(deepscope, name) is getattr(errors, name) and name in deepscope.__all__
    assert deepscope.NonFiniteError is NonFiniteError and "NonFiniteError" in deepscope.__all__
