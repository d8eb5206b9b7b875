import pytest
import torch
from torch import nn

from deepscope.errors import InvalidParameterError
from deepscope.models import MLP


@pytest.mark.parametrize("shape", [(13,), (1, 8, 8), (4, 20)])
def test_output_shape_for_any_input_shape(shape):
    net = MLP(shape, 5, widths=(16, 8))
    assert net(torch.randn(3, *shape)).shape == (3, 5)


def test_layers_follow_options():
    net = MLP((6,), 2, widths=(8, 4), activation="tanh", dropout=0.2, batch_norm=True)
    kinds = [type(m) for m in net]
    assert kinds == [
        nn.Flatten,
        nn.Linear,
        nn.BatchNorm1d,
        nn.Tanh,
        nn.Dropout,
        nn.Linear,
        nn.BatchNorm1d,
        nn.Tanh,
        nn.Dropout,
        nn.Linear,
    ]


def test_no_hidden_layers_is_a_linear_model():
    # oracle: with widths=() the network is exactly x @ W.T + b
    net = MLP((3,), 2, widths=())
    x = torch.randn(4, 3)
    torch.testing.assert_close(net(x), x @ net[1].weight.T + net[1].bias)


@pytest.mark.parametrize(
    "kwargs",
    [{"activation": "swish"}, {"widths": (0,)}, {"dropout": 1.0}, {"input_shape": (0,)}, {"num_classes": 0}],
)
def test_invalid_options_raise(kwargs):
    arguments = {"input_shape": (3,), "num_classes": 2, **kwargs}
    with pytest.raises(InvalidParameterError):
        MLP(**arguments)
