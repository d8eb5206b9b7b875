import pytest
import torch

from deepscope.errors import InvalidParameterError
from deepscope.models import CNN1d


@pytest.mark.parametrize("shape", [(4, 20), (1, 40), (4, 3)])
@pytest.mark.parametrize("pooling", ["flatten", "max", "mean"])
def test_output_shape(shape, pooling):
    net = CNN1d(shape, 3, pooling=pooling).eval()
    assert net(torch.randn(2, *shape)).shape == (2, 3)


def test_global_max_pooling_is_invariant_to_where_a_motif_sits():
    # oracle: with one conv block, global max pooling and no hidden layer, moving an isolated motif
    # (zeros elsewhere, away from the borders) along the sequence cannot change the output
    net = CNN1d((4, 32), 2, channels=(6,), hidden=0, pooling="max", batch_norm=False).eval()
    motif = torch.nn.functional.one_hot(torch.tensor([0, 3, 2, 1]), 4).T.float()
    first, second = torch.zeros(1, 4, 32), torch.zeros(1, 4, 32)
    first[0, :, 8:12] = motif
    second[0, :, 20:24] = motif
    torch.testing.assert_close(net(first), net(second))


def test_unknown_pooling_is_refused():
    with pytest.raises(InvalidParameterError, match="pooling"):
        CNN1d((4, 20), 2, pooling="attention")
