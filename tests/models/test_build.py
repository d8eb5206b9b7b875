from types import SimpleNamespace

import pytest
import torch

from deepscope.errors import DataError, InvalidParameterError
from deepscope.models import ARCHITECTURES, build, default_architecture

TYPICAL = {
    "mlp": (30,),
    "cnn2d": (1, 8, 8),
    "cnn1d": (4, 50),
    "resnet": (1, 16, 16),
    "transformer": (1, 40),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_on_its_typical_input(name):
    shape = TYPICAL[name]
    net = build(name, shape, 7).eval()
    assert net(torch.randn(4, *shape)).shape == (4, 7)
    # the recorded config rebuilds the same architecture (parameter names and shapes)
    config = net.deepscope_config
    assert config["arch"] == name
    again = build(config["arch"], **config["arch_kwargs"])
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_same_global_seed_gives_same_weights():
    torch.manual_seed(3)
    first = build("cnn2d", (1, 8, 8), 10)
    torch.manual_seed(3)
    second = build("cnn2d", (1, 8, 8), 10)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_unknown_name_lists_the_choices():
    with pytest.raises(InvalidParameterError, match="'mlp'"):
        build("vgg", (3,), 2)


def test_unknown_option_is_a_clear_error():
    with pytest.raises(InvalidParameterError, match="build\\('mlp'\\)"):
        build("mlp", (3,), 2, depth=4)


def test_default_architecture_from_input_shape():
    assert default_architecture(SimpleNamespace(input_shape=(30,))) == "mlp"
    assert default_architecture(SimpleNamespace(input_shape=(4, 100))) == "cnn1d"
    assert default_architecture(SimpleNamespace(input_shape=(1, 8, 8))) == "cnn2d"
    with pytest.raises(DataError):
        default_architecture(SimpleNamespace(input_shape=(1, 2, 3, 4)))
    with pytest.raises(InvalidParameterError):
        default_architecture("digits")


def test_default_architecture_on_a_loaded_dataset(digits):
    assert default_architecture(digits) == "cnn2d"
