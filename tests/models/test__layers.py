"""The shared pieces of the reference architectures: activations by name and the argument checks."""

from __future__ import annotations

import pytest
from torch import nn

from deepscope.errors import InvalidParameterError
from deepscope.models._layers import (
    ACTIVATIONS,
    check_classes,
    check_dropout,
    check_input_shape,
    check_widths,
    make_activation,
)


def test_make_activation_gives_a_fresh_module_each_time():
    first, second = make_activation("relu", "mlp"), make_activation("relu", "mlp")
    assert isinstance(first, nn.ReLU) and first is not second  # hooks see each use separately
    assert set(ACTIVATIONS) >= {"relu", "tanh", "gelu", "identity"}
    with pytest.raises(InvalidParameterError, match="'activation' parameter of mlp"):
        make_activation("swish2", "mlp")


def test_check_input_shape():
    assert check_input_shape(8, "mlp", (1,)) == (8,)
    assert check_input_shape([1, 28, 28], "cnn2d", (3,)) == (1, 28, 28)
    for bad in ((1, 28), (0, 28, 28), (1.0, 2, 2), None, (True, 2, 2)):
        with pytest.raises(InvalidParameterError, match="'input_shape' parameter of cnn2d must be a tuple of 3"):
            check_input_shape(bad, "cnn2d", (3,))
    with pytest.raises(InvalidParameterError, match="a tuple of 1 or 2 positive ints"):
        check_input_shape((1, 2, 3), "f", (1, 2))


def test_check_widths_dropout_and_classes():
    assert check_widths(16, "widths", "mlp") == (16,) and check_widths([], "widths", "mlp") == ()
    with pytest.raises(InvalidParameterError, match="a non-empty sequence"):
        check_widths([], "channels", "cnn", allow_empty=False)
    for bad in ([16, 0], [2.5], "abc", 3.0):
        with pytest.raises(InvalidParameterError, match="'widths' parameter of mlp must be a sequence of positive"):
            check_widths(bad, "widths", "mlp")
    assert check_dropout(0, "mlp") == 0.0 and check_dropout(0.5, "mlp") == 0.5
    with pytest.raises(InvalidParameterError, match=r"in \[0, 1\)"):
        check_dropout(1.0, "mlp")
    assert check_classes(10, "mlp") == 10
    with pytest.raises(InvalidParameterError, match="'num_classes' parameter of mlp"):
        check_classes(0, "mlp")
