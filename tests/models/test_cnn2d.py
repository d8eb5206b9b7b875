import pytest
import torch
from torch import nn

from deepscope.errors import InvalidParameterError
from deepscope.models import CNN2d


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 16, 16), (3, 5, 7), (2, 1, 1)])
def test_output_shape(shape):
    net = CNN2d(shape, 4).eval()
    assert net(torch.randn(2, *shape)).shape == (2, 4)


def test_pooling_is_skipped_once_the_map_is_one_pixel():
    net = CNN2d((1, 2, 2), 3, channels=(4, 4, 4))
    assert sum(isinstance(m, nn.MaxPool2d) for m in net) == 1


def test_batch_norm_and_dropout_options():
    plain = CNN2d((1, 8, 8), 3, batch_norm=False)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in plain)
    rich = CNN2d((1, 8, 8), 3, dropout=0.3)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in rich) == 2
    assert sum(isinstance(m, nn.Dropout) for m in rich) == 2


def test_even_kernel_is_refused():
    with pytest.raises(InvalidParameterError, match="kernel_size"):
        CNN2d((1, 8, 8), 3, kernel_size=4)


def test_wrong_input_rank_is_refused():
    with pytest.raises(InvalidParameterError, match="input_shape"):
        CNN2d((8, 8), 3)
