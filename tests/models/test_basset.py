import pytest
import torch
from torch import nn

from deepscope.errors import InvalidParameterError
from deepscope.models import ARCHITECTURES, Basset, build
from deepscope.models.basset import PAPER_SIZES


def test_paper_network_layer_by_layer():
    # oracle: Kelley et al. (2016), Basset on 600 bp: 600 -conv19-> 582 -pool3-> 194 -conv11-> 184
    # -pool4-> 46 -conv7-> 40 -pool4-> 10 positions x 200 channels = 2000 features into FC 1000
    net = Basset((4, 600), 164, **PAPER_SIZES, sigmoid=True)
    convs = [m for m in net if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (4, 300, 19),
        (300, 200, 11),
        (200, 200, 7),
    ]
    assert [m.kernel_size for m in net if isinstance(m, nn.MaxPool1d)] == [3, 4, 4]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net) == 3
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(2000, 1000), (1000, 1000), (1000, 164)]
    assert [m.p for m in net if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert isinstance(net[-1], nn.Sigmoid)


def test_logits_by_default_and_probabilities_with_sigmoid():
    torch.manual_seed(0)
    logits = Basset((4, 200), 3).eval()
    torch.manual_seed(0)
    probabilities = Basset((4, 200), 3, sigmoid=True).eval()
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (5, 200)), 4).transpose(1, 2).float()
    out = logits(x)
    assert out.shape == (5, 3)
    torch.testing.assert_close(probabilities(x), torch.sigmoid(out))


def test_same_padding_keeps_length_before_pooling():
    # with "same" padding only the pools shorten: 60 -> 20 -> 5 -> 1 position
    net = Basset((4, 60), 2, channels=(4, 4, 4), hidden=(), padding="same")
    assert net[-1].in_features == 4 * 1
    assert net(torch.zeros(2, 4, 60)).shape == (2, 2)


def test_registered_and_rebuilt_from_its_config():
    assert ARCHITECTURES["basset"] is Basset
    net = build("basset", (4, 200), 7)
    again = build(net.deepscope_config["arch"], **net.deepscope_config["arch_kwargs"])
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (4, 50)}, "long enough"),
        ({"kernel_sizes": (19, 11)}, "one kernel size and one pool"),
        ({"padding": "causal"}, "padding"),
        ({"padding": "same", "kernel_sizes": (18, 11, 7)}, "odd kernel"),
        ({"sigmoid": 1}, "sigmoid"),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    options = {"input_shape": (4, 200), "num_classes": 2, **kwargs}
    with pytest.raises(InvalidParameterError, match=match):
        Basset(**options)
