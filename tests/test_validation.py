import pytest

from deepscope._validation import check_choice, check_float, check_int, check_probability
from deepscope.errors import DeepscopeError, InvalidParameterError, invalid_parameter


def test_standard_message_shape():
    with pytest.raises(InvalidParameterError) as error:
        check_int(0, "k", "hessian_eigenvalues", minimum=1)
    assert str(error.value) == "The 'k' parameter of hessian_eigenvalues must be an int >= 1. Got 0 instead."


def test_validators_accept_and_reject():
    assert check_int(3, "n", "f", minimum=1, maximum=3) == 3
    for bad in (True, 1.0, "3", 4):
        with pytest.raises(InvalidParameterError):
            check_int(bad, "n", "f", maximum=3)
    assert check_float(2, "x", "f", minimum=0.0, strict_minimum=True) == 2.0
    for bad in (0.0, float("nan"), float("inf"), "1"):
        with pytest.raises(InvalidParameterError):
            check_float(bad, "x", "f", minimum=0.0, strict_minimum=True)
    assert check_probability(0.05, "delta", "f") == 0.05
    for bad in (0, 1, -0.1, True):
        with pytest.raises(InvalidParameterError, match="open interval"):
            check_probability(bad, "delta", "f")
    assert check_choice("a", "which", "f", ("a", "b")) == "a"
    with pytest.raises(InvalidParameterError, match="one of 'a', 'b'. Got 'c' instead"):
        check_choice("c", "which", "f", ("a", "b"))


def test_describe_long_and_tensor_values():
    import torch

    error = invalid_parameter("x", "f", "a scalar", torch.zeros(2, 3))
    assert "Tensor of shape (2, 3) and dtype torch.float32" in str(error)
    assert isinstance(error, DeepscopeError)
    assert str(invalid_parameter("x", "f", "short", "y" * 200)).count("...") == 1
